"""Text-kNN: the items whose text is nearest the user's recent items' texts.

A user's vector is the mean of the (L2-normalised) text embeddings of their last ``recent``
items; every item is scored by cosine with it. Nothing is trained and nothing depends on
interactions, so a new item is scored like any other: the baseline every text-aware model has
to beat on rare and new items.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ur4rec.config import RunConfig
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.splits import PAD
from ur4rec.models.base import ModelInputs, register
from ur4rec.models.baselines import FittedModel


@register
class TextKNN(FittedModel):
    name = "text-knn"
    uses_text = True

    def __init__(self, item_text: torch.Tensor, recent: int = 5) -> None:
        super().__init__()
        self.n_items = item_text.shape[0]
        self.recent = recent
        self.register_buffer("item_text", F.normalize(item_text.float(), dim=1), persistent=False)

    @classmethod
    def build(cls, inputs: ModelInputs) -> TextKNN:
        recent = inputs.cfg.text_knn.recent
        if inputs.saved is not None:
            return cls(inputs.saved["item_text"], recent)
        if inputs.texts is None:
            raise ValueError("text-knn needs item text embeddings")
        return cls(inputs.texts.item, recent)

    def user_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[B, text_dim]: the mean text vector of each history's last ``recent`` real items."""
        valid = items != PAD
        # Count real items from the right: 1 for the most recent, whatever the padding.
        from_end = valid.flip(1).cumsum(1).flip(1)
        used = valid if self.recent <= 0 else valid & (from_end <= self.recent)
        vectors = self.item_text[items.clamp(min=0)] * used[..., None]
        return F.normalize(vectors.sum(dim=1), dim=1)  # an empty history: zeros, all scores 0

    def add_items(self, item_text: torch.Tensor) -> None:
        vectors = F.normalize(item_text.float(), dim=1)
        self.register_buffer("item_text", torch.cat([self.item_text, vectors]), persistent=False)
        self.n_items = self.item_text.shape[0]

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.user_vectors(batch.items) @ self.item_text.T

    def item_space(self) -> torch.Tensor:
        return self.item_text

    def item_text_vectors(self) -> torch.Tensor | None:
        return self.item_text

    def inference_inputs(self) -> dict[str, Any]:
        return {"item_text": self.item_text}

    def describe_config(self, cfg: RunConfig) -> str:
        return (
            f"text-kNN: the mean `{cfg.text.item_texts}` text embedding ({cfg.text.encoder}) of "
            f"the user's last {cfg.text_knn.recent} items, matched against every item's by "
            "cosine; nothing trained."
        )
