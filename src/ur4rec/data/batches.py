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


__all__ = ["PAD", "HistoryBatch", "TrainBatch", "last_items"]


def last_items(items: torch.Tensor, width: int) -> torch.Tensor:
    """[B, width]: each history's last ``width`` real items in order, padding on the left,
    whatever the padding of ``items`` [B, L] (left, right or none)."""
    # A stable sort on "is real" moves padding to the front and keeps the items' order.
    order = torch.argsort((items != PAD).to(torch.int8), dim=1, stable=True)
    aligned = items.gather(1, order)
    if aligned.shape[1] < width:
        aligned = torch.nn.functional.pad(aligned, (width - aligned.shape[1], 0), value=PAD)
    return aligned[:, -width:]
