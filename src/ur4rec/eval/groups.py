"""Users grouped by what their case is: how often the target item occurs in training, and how
long the user's input history is. Text is meant for the rare and new items and the short
histories, where an ID model has little to go on; the "all" figure hides them (on
ml-100k-liked four in five test targets are head items).

- by the target's training interactions: ``cold`` (none: a new item), ``warm`` (any), split
  into ``tail`` (1 to ``tail_below - 1``) and ``head`` (``tail_below`` or more);
- by the input history's length: ``short`` (at most ``short_max`` items), ``long``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ur4rec.eval.metrics import metrics_from_ranks
from ur4rec.measures import DEFAULT_KS

GROUPS = ("cold", "warm", "tail", "head", "short", "long")
FEW_USERS = 30  # below this a group's figures move by more than the differences between models


@dataclass(frozen=True)
class GroupSpec:
    tail_below: int = 20  # head: at least this many training interactions
    short_max: int = 10  # short: at most this many items in the input history

    def __post_init__(self) -> None:
        if self.tail_below < 1 or self.short_max < 0:
            raise ValueError(
                f"groups: tail_below must be >= 1 and short_max >= 0, got {self.tail_below}, "
                f"{self.short_max}"
            )

    def legend(self) -> str:
        t, s = self.tail_below, self.short_max
        return (
            f"target's training interactions: cold 0, warm >= 1 (tail 1-{t - 1}, head >= {t}); "
            f"history: short <= {s}, long > {s} items"
        )

    def describe(self) -> dict[str, str]:
        t, s = self.tail_below, self.short_max
        return {
            "cold": "target has 0 training interactions",
            "warm": "target has >= 1 training interactions",
            "tail": f"target has 1-{t - 1} training interactions",
            "head": f"target has >= {t} training interactions",
            "short": f"history of <= {s} items",
            "long": f"history of > {s} items",
        }


def user_groups(
    train_counts: np.ndarray,
    targets: np.ndarray,
    history_lengths: np.ndarray,
    spec: GroupSpec = GroupSpec(),
) -> dict[str, np.ndarray]:
    """A boolean mask over the evaluated users for each group in GROUPS."""
    count = np.asarray(train_counts)[np.asarray(targets)]
    lengths = np.asarray(history_lengths)
    return {
        "cold": count == 0,
        "warm": count >= 1,
        "tail": (count >= 1) & (count < spec.tail_below),
        "head": count >= spec.tail_below,
        "short": lengths <= spec.short_max,
        "long": lengths > spec.short_max,
    }


def group_metrics(
    ranks: torch.Tensor | np.ndarray,
    groups: dict[str, np.ndarray],
    ks: tuple[int, ...] = DEFAULT_KS,
) -> dict[str, dict[str, float | int]]:
    """``{group: {"users": n, "hit@10": ..., ...}}``; a group without users has only its count."""
    ranks = torch.as_tensor(np.asarray(ranks))
    out: dict[str, dict[str, float | int]] = {}
    for name, mask in groups.items():
        n = int(mask.sum())
        out[name] = {"users": n}
        if n:
            out[name].update(metrics_from_ranks(ranks[torch.from_numpy(mask)], ks))
    return out
