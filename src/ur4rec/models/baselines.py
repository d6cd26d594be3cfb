"""Models fitted in closed form, behind the same interface as the trained ones: popularity and
EASE (Steck, 2019; optionally over a user's last items only, see models/ease.py)."""

from __future__ import annotations

import torch

from ur4rec.data.batches import HistoryBatch
from ur4rec.data.splits import interaction_counts
from ur4rec.models.base import ModelInputs, RecModel, register
from ur4rec.models.ease import ease_weights, recent_item_scores


class FittedModel(RecModel):
    """A model fitted when built; its states are its scores (they need no other input)."""

    trainable = False

    def user_states(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {"score": self.score(batch)}

    def scores_from_states(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {"score": states["score"]}


@register
class Popularity(FittedModel):
    """Scores every item by how often it occurs in the training part."""

    name = "pop"

    def __init__(self, counts: torch.Tensor) -> None:
        super().__init__()
        self.n_items = len(counts)
        self.register_buffer("counts", counts.to(torch.float32))

    @classmethod
    def build(cls, inputs: ModelInputs) -> Popularity:
        if inputs.saved is not None:  # the counts come with the checkpoint
            return cls(torch.zeros(inputs.dataset.n_items))
        return cls(torch.from_numpy(interaction_counts(inputs.dataset, inputs.train)))

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.counts.expand(len(batch.users), -1).clone()

    def item_space(self) -> torch.Tensor:
        return self.counts[:, None]


@register
class EASE(FittedModel):
    """EASE's item-item matrix B; a user's scores are x @ B for the multi-hot x of their
    history (``recent`` > 0: of their last ``recent`` items only)."""

    name = "ease"

    def __init__(self, weights: torch.Tensor, recent: int = 0, l2: float | None = None) -> None:
        super().__init__()
        self.n_items = weights.shape[0]
        self.recent = recent
        self.l2 = l2  # the lambda it was fitted with, for reports
        self.register_buffer("weights", weights)

    @classmethod
    def build(cls, inputs: ModelInputs) -> EASE:
        cfg = inputs.cfg.ease
        if inputs.saved is not None:  # the matrix comes with the checkpoint
            n = inputs.dataset.n_items
            return cls(torch.zeros(n, n), cfg.recent, cfg.l2)
        return cls(ease_weights(inputs.dataset, inputs.train, cfg.l2), cfg.recent, cfg.l2)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return recent_item_scores(self.weights, batch.items, self.recent)

    def item_space(self) -> torch.Tensor:
        return self.weights
