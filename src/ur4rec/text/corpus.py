"""Texts aligned with a dataset's internal ids, external files imported, embeddings built."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import make_split
from ur4rec.errors import DataError
from ur4rec.text.domain import domain_of
from ur4rec.text.encoder import TextEncoder
from ur4rec.text.history import UserHistory, training_histories
from ur4rec.text.store import read_texts
from ur4rec.text.templates import item_text, user_text

# Placeholders some generators write instead of a text; treated as missing.
PLACEHOLDERS = {"", "no description available."}


def template_texts(
    dataset: Dataset, kind: str, scheme: str = "leave-one-out", titles: bool = True
) -> dict[str, str]:
    """Template texts for every item or user (users: the training part only; ``titles=False``
    is the title-free style)."""
    domain = domain_of(dataset)
    if kind == "items":
        return {
            raw: item_text(info, domain)
            for raw, info in zip(dataset.item_ids, dataset.item_info, strict=True)
        }
    histories = training_histories(dataset, make_split(dataset, scheme))
    return {h.raw_user_id: user_text(h, titles=titles, domain=domain) for h in histories}


def template_snapshots(
    dataset: Dataset, every: int, scheme: str = "leave-one-out", titles: bool = True
) -> tuple[list[str], np.ndarray]:
    """User texts as they stood during training: for each user, one text per ``every`` training
    items, written from the first ``k * every`` of them (k = 1, 2, ...).

    Returns (texts, first_row): row 0 is the text of a user with no items yet; user ``u``'s
    k-th text is row ``first_row[u] + k - 1``. A training target at position p of a sequence
    reads :func:`snapshot_rows`'s row, written from items before p only.
    """
    if every < 1:
        raise ValueError("every must be >= 1")
    histories = training_histories(dataset, make_split(dataset, scheme))
    empty = UserHistory("", ())
    domain = domain_of(dataset)
    texts = [user_text(empty, titles=titles, domain=domain)]
    first_row = np.zeros(dataset.n_users, dtype=np.int64)
    for user, history in enumerate(histories):
        first_row[user] = len(texts)
        # Training targets sit at positions 1 .. n-1, so cut-offs every .. n-1 cover them all.
        for cut in range(every, len(history.items), every):
            texts.append(
                user_text(
                    UserHistory(history.raw_user_id, history.items[:cut]),
                    titles=titles,
                    domain=domain,
                )
            )
    return texts, first_row


def snapshot_rows(
    users: np.ndarray, positions: np.ndarray, first_row: np.ndarray, every: int
) -> np.ndarray:
    """The snapshot row for a target at ``positions`` (index in the user's sequence, -1 for
    padding) of each of ``users``: the latest text written from items before it."""
    users = np.asarray(users)[..., None] if np.ndim(positions) > np.ndim(users) else users
    k = np.maximum(np.asarray(positions), 0) // every
    return np.where(k > 0, np.asarray(first_row)[users] + k - 1, 0)


def import_texts(
    dataset: Dataset, kind: str, path: str | Path, scheme: str = "leave-one-out"
) -> tuple[dict[str, str], dict[str, Any]]:
    """Texts from an external file keyed by raw ids; missing or placeholder ids are filled by
    the template. Returns the texts (in dataset order) and a report."""
    external = read_texts(path)
    ids = dataset.item_ids if kind == "items" else dataset.user_ids
    known = set(ids)
    unknown = sorted((k for k in external if k not in known), key=lambda s: (len(s), s))
    if external and len(unknown) == len(external):
        raise DataError(f"{path}: none of its ids are {kind} of {dataset.name}, e.g. {unknown[:3]}")
    fallback = template_texts(dataset, kind, scheme)
    texts: dict[str, str] = {}
    filled: list[str] = []
    for raw in ids:
        text = external.get(raw, "").strip()
        if text.lower() in PLACEHOLDERS:
            texts[raw] = fallback[raw]
            filled.append(raw)
        else:
            texts[raw] = text
    report = {
        "dataset": dataset.name,
        "data_hash": dataset.content_hash,
        "kind": kind,
        "backend": "import",
        "source_file": str(Path(path).resolve()),
        "imported": len(ids) - len(filled),
        "filled_by_template": filled,
        "unknown_ids_ignored": unknown,
        "split": scheme if kind == "users" else None,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return texts, report


def aligned(
    dataset: Dataset, kind: str, texts: dict[str, str] | None, scheme: str = "leave-one-out"
) -> list[str]:
    """One text per internal item (or user) index; ids without a text get the template."""
    ids = dataset.item_ids if kind == "items" else dataset.user_ids
    texts = texts or {}
    if all(texts.get(raw) for raw in ids):
        return [texts[raw] for raw in ids]
    fallback = template_texts(dataset, kind, scheme)
    return [texts.get(raw) or fallback[raw] for raw in ids]


def embed(
    dataset: Dataset,
    kind: str,
    texts: dict[str, str] | None,
    encoder: TextEncoder,
    scheme: str = "leave-one-out",
    show_progress: bool = False,
) -> np.ndarray:
    """[n_items or n_users, dim] embeddings aligned with internal ids."""
    return encoder.encode(aligned(dataset, kind, texts, scheme), show_progress=show_progress)
