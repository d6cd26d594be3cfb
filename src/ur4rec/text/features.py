"""Text features for UR4Rec: item and user texts, encoded (and cached) once per run."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ur4rec.config import RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.sources import data_dir
from ur4rec.errors import Ur4recError
from ur4rec.text.audit import audit_texts
from ur4rec.text.corpus import aligned, import_texts, template_snapshots, template_texts
from ur4rec.text.encoder import TextEncoder
from ur4rec.text.store import read_texts


@dataclass
class TextFeatures:
    item: torch.Tensor  # [n_items, text_dim]
    user: torch.Tensor  # [n_users, text_dim]
    user_texts: list[str]  # for a trainable text encoder
    # text.user_text_every > 0: the texts as they stood during training (template_snapshots)
    snapshots: torch.Tensor | None = None  # [n_snapshots, text_dim]
    snapshot_first_row: np.ndarray | None = None  # [n_users]


def text_features(cfg: RunConfig, dataset: Dataset, root: str | None = None) -> TextFeatures:
    scheme = cfg.data.scheme
    item_texts = None
    if cfg.text.item_texts != "template":
        item_texts, _ = import_texts(dataset, "items", cfg.text.item_texts, scheme)
    user_texts = None
    if cfg.text.user_texts == "template-aspects":
        user_texts = template_texts(dataset, "users", scheme, titles=False)
    elif cfg.text.user_texts != "template":
        user_texts = read_texts(cfg.text.user_texts)
        if cfg.text.audit:
            result = audit_texts(dataset, user_texts, scheme)
            if result.leaked:
                raise Ur4recError(
                    f"{cfg.text.user_texts}: the leakage audit finds held-out titles in "
                    f"{result.test_share:.0%} of user texts (control {result.control_share:.0%});"
                    " refusing to train on them (text.audit=false overrides, for experiments only)"
                )
    every = cfg.text.user_text_every
    if every < 0:
        raise Ur4recError(f"text.user_text_every must be >= 0, got {every}")
    if every > 0 and cfg.text.user_texts not in ("template", "template-aspects"):
        raise Ur4recError(
            "text.user_text_every needs template user texts (a file holds one text per user); "
            f"text.user_texts is {cfg.text.user_texts!r}"
        )
    if every > 0 and cfg.text.trainable_layers > 0:
        raise Ur4recError("text.user_text_every does not combine with text.trainable_layers > 0")
    encoder = TextEncoder(cfg.text.encoder, cache_dir=data_dir(root) / "embeddings")
    items = aligned(dataset, "items", item_texts, scheme)
    users = aligned(dataset, "users", user_texts, scheme)
    features = TextFeatures(
        torch.from_numpy(encoder.encode_mapped(items)),
        torch.from_numpy(encoder.encode_mapped(users)),
        users,
    )
    if every > 0:
        titles = cfg.text.user_texts == "template"
        snapshots, features.snapshot_first_row = template_snapshots(dataset, every, scheme, titles)
        features.snapshots = torch.from_numpy(encoder.encode_mapped(snapshots))
    return features
