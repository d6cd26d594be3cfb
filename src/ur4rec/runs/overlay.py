"""Items added to a trained run: the item overlay.

A catalogue grows after training. ``items-added.pt`` beside the run holds every added item
(raw id, title, text, optional metadata) and its text embedding from the run's sentence
encoder; a run loaded for serving appends them to its dataset and model
(:meth:`RecModel.add_items`), which score them from text alone, as any item never seen in
training. Nothing is retrained. The file is written atomically with a digest, under a lock,
so a crash leaves the previous overlay and two writers never lose each other's items.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ur4rec.data.dataset import Dataset
from ur4rec.data.raw import ItemInfo
from ur4rec.errors import Ur4recError
from ur4rec.models import RecModel
from ur4rec.runs.checkpoint import load_checkpoint, save_checkpoint

OVERLAY = "items-added.pt"
MAX_TEXT = 20_000  # characters; a description, not a document
MAX_ID = 200


class DuplicateItemError(Ur4recError):
    """An added item's id is already in the run's catalogue."""


class ItemSpecError(Ur4recError):
    """An added item is malformed (no id, an empty text, ...)."""


@dataclass
class NewItem:
    """An item that arrived after training: what the catalogue knows of it."""

    id: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)

    def info(self) -> ItemInfo:
        year = self.metadata.get("year")
        genres = self.metadata.get("genres") or []
        return ItemInfo(
            self.title,
            year if isinstance(year, int) and not isinstance(year, bool) else None,
            tuple(g for g in genres if isinstance(g, str)) if isinstance(genres, list) else (),
        )

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "text": self.text, "metadata": self.metadata}


def parse_item(obj: object, where: str = "item") -> NewItem:
    """A :class:`NewItem` from a JSON object ``{"id", "title", "text", "metadata"?}``; raises
    :class:`ItemSpecError` naming ``where`` and the field."""
    if not isinstance(obj, dict):
        raise ItemSpecError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    raw_id = obj.get("id")
    if isinstance(raw_id, int) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)
    if not isinstance(raw_id, str) or not raw_id.strip() or len(raw_id) > MAX_ID:
        raise ItemSpecError(f"{where}: 'id' must be a non-empty string of at most {MAX_ID} chars")
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        raise ItemSpecError(f"{where} {raw_id!r}: 'text' must be a non-empty string")
    if len(text) > MAX_TEXT:
        raise ItemSpecError(f"{where} {raw_id!r}: 'text' is longer than {MAX_TEXT} characters")
    title = obj.get("title", raw_id)
    if not isinstance(title, str) or not title.strip():
        raise ItemSpecError(f"{where} {raw_id!r}: 'title' must be a non-empty string")
    metadata = obj.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ItemSpecError(f"{where} {raw_id!r}: 'metadata' must be a JSON object")
    unknown = sorted(set(obj) - {"id", "title", "text", "metadata"})
    if unknown:
        raise ItemSpecError(f"{where} {raw_id!r}: unknown field(s) {', '.join(unknown)}")
    return NewItem(raw_id.strip(), title.strip(), text.strip(), dict(metadata))


@dataclass
class Overlay:
    items: list[NewItem]
    vectors: torch.Tensor  # [len(items), text_dim], the run's sentence encoder
    encoder: str

    @classmethod
    def empty(cls, encoder: str) -> Overlay:
        return cls([], torch.zeros(0, 0), encoder)


def overlay_path(run_dir: Path) -> Path:
    return Path(run_dir) / OVERLAY


def overlay_signature(run_dir: Path) -> tuple[int, int] | None:
    """(mtime_ns, size) of the overlay file, None without one: cheap to poll, so every
    process serving a run can see items another one added."""
    try:
        stat = overlay_path(run_dir).stat()
    except OSError:
        return None
    return stat.st_mtime_ns, stat.st_size


def read_overlay(run_dir: Path, encoder: str) -> Overlay:
    """The run's added items (none without a file); verified against its digest."""
    path = overlay_path(run_dir)
    if not path.is_file():
        return Overlay.empty(encoder)
    payload = load_checkpoint(path, "items")
    if payload.get("encoder") != encoder:
        raise Ur4recError(
            f"{OVERLAY} was encoded by {payload.get('encoder')!r}, the run reads {encoder!r}"
        )
    items = [parse_item(obj, f"{OVERLAY} item {i}") for i, obj in enumerate(payload["items"])]
    vectors = payload["vectors"]
    if not isinstance(vectors, torch.Tensor) or len(vectors) != len(items):
        raise Ur4recError(f"{OVERLAY} is damaged: {len(items)} items but not as many vectors")
    return Overlay(items, vectors.float(), encoder)


@contextlib.contextmanager
def _locked(run_dir: Path) -> Iterator[None]:
    """An exclusive lock on the run's overlay across processes (POSIX; elsewhere, none)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    fd = os.open(Path(run_dir) / f".{OVERLAY}.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def check_new(items: list[NewItem], taken: set[str]) -> None:
    """Refuse ids the catalogue (``taken``) or the batch itself already holds."""
    seen: set[str] = set()
    for item in items:
        if item.id in taken or item.id in seen:
            raise DuplicateItemError(f"item id {item.id!r} is already in the catalogue")
        seen.add(item.id)


def append_items(
    run_dir: Path,
    items: list[NewItem],
    vectors: torch.Tensor,
    encoder: str,
    catalogue: set[str],
    known: tuple[Overlay, tuple[int, int] | None] | None = None,
) -> tuple[Overlay, tuple[int, int] | None]:
    """Add ``items`` (with their text vectors) to the run's overlay, atomically; ``catalogue``:
    the ids of the trained catalogue; ``known``: the overlay the caller last read or wrote and
    its signature, used instead of reading the file again while the file still has that
    signature. Returns the whole overlay as written and the file's signature then (taken
    under the lock: this very overlay's)."""
    if len(items) != len(vectors):
        raise ValueError("one vector per item")
    with _locked(run_dir):
        # Same signature, same file (no file: None, and the caller's overlay is empty too).
        if known is not None and overlay_signature(run_dir) == known[1]:
            current = known[0]
        else:
            current = read_overlay(run_dir, encoder)
        check_new(items, catalogue | {item.id for item in current.items})
        parts = [v for v in (current.vectors, vectors.float()) if len(v)]
        merged = Overlay(current.items + items, torch.cat(parts), encoder)
        save_checkpoint(
            overlay_path(run_dir),
            {
                "items": [item.to_json() for item in merged.items],
                "vectors": merged.vectors.contiguous(),
                "encoder": encoder,
            },
        )
        signature = overlay_signature(run_dir)
    return merged, signature


def apply_items(
    dataset: Dataset, model: RecModel, items: list[NewItem], vectors: torch.Tensor
) -> None:
    """Append items to a loaded run's dataset and model (the model first: one that cannot
    score new items refuses before anything changes)."""
    if not items:
        return
    model.add_items(vectors.float())
    dataset.add_items([item.id for item in items], [item.info() for item in items])
