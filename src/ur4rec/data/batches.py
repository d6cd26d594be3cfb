"""What models consume: batches of histories to score and of training windows to learn from."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ur4rec.data.splits import PAD


@dataclass(frozen=True)
class HistoryBatch:
    """Users and their input histories: ``items`` is [B, L], left-padded with PAD (-1), the
    most recent item in the last column. A user the model has never seen has id -1."""

    users: torch.Tensor  # int64 [B]
    items: torch.Tensor  # int64 [B, L]

    @property
    def lengths(self) -> torch.Tensor:
        return (self.items != PAD).sum(dim=1)


@dataclass(frozen=True)
class TrainBatch:
    """Training windows: ``inputs`` [B, L] left-padded histories, ``targets`` [B, L] the item
    after each input position (PAD where the input is PAD), ``windows`` [B] the window ids
    (for per-window state such as memory), ``users`` [B]."""

    users: torch.Tensor
    windows: torch.Tensor
    inputs: torch.Tensor
    targets: torch.Tensor


__all__ = ["PAD", "HistoryBatch", "TrainBatch"]
