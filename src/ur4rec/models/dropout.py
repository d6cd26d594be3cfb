"""Dropout with a cheaper random mask.

``nn.Dropout`` draws one Bernoulli number per element from the CPU generator, which took a
sixth of a SASRec epoch on two cores. Here each 64-bit draw of the same global generator
gives four 16-bit numbers, so the drop probability is rounded to a multiple of 1/65536 and
the kept values are scaled by the exact inverse of the kept share (the expectation is
unchanged). Seeding ``torch.manual_seed`` makes it as reproducible as ``nn.Dropout``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

_LEVELS = 1 << 16


def keep_mask(shape: torch.Size | tuple[int, ...], p: float) -> tuple[torch.Tensor, float]:
    """A bool mask of ``shape`` (True: kept, with probability ~1 - p) and the kept share."""
    n = math.prod(shape)
    words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), 2**63 - 1)
    dropped = round(p * _LEVELS)
    mask = words.view(torch.int16)[:n].view(shape) >= dropped - _LEVELS // 2
    return mask, 1.0 - dropped / _LEVELS


def apply_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if not training or p <= 0:
        return x
    if x.device.type != "cpu":  # the cheap mask is a CPU economy; accelerators draw their own
        return torch.nn.functional.dropout(x, p, True)
    mask, kept = keep_mask(x.shape, p)
    if kept <= 0:
        return x * 0.0
    # One float factor (0 or 1/kept): the backward pass is then a single product.
    return x * mask.to(x.dtype).mul_(1.0 / kept)


class Dropout(nn.Module):
    """``nn.Dropout`` with :func:`keep_mask`."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return apply_dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
