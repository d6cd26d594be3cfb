"""Paired comparison of two models measured on the same users over several training seeds.

One seed's test NDCG@10 on ml-100k-liked moves by about 0.005 between seeds, about as much as
the differences worth knowing, so "A's mean is higher" says little. This gives the mean
difference with two 95% intervals: one from resampling users (the same resample for every
seed, so the seeds stay paired) and one across seeds (a t-interval on the per-seed means).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two-sided 97.5% t quantiles by degrees of freedom; beyond the table the normal's 1.96 is near.
_T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306,
         9: 2.262, 10: 2.228, 15: 2.131, 20: 2.086, 30: 2.042}  # fmt: skip


def t_quantile(dof: int) -> float:
    """The 97.5% quantile of Student's t (the nearest tabulated degrees of freedom below)."""
    if dof < 1:
        raise ValueError("need at least one degree of freedom")
    return _T975[max(d for d in _T975 if d <= dof)] if dof <= 30 else 1.96


def ndcg_at(ranks: np.ndarray, k: int = 10) -> np.ndarray:
    """Per-user NDCG@k from 0-based target ranks (one relevant item)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    return np.where(ranks < k, 1.0 / np.log2(ranks + 2.0), 0.0)


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean over seeds and users of (a - b)
    users_low: float  # 95% interval from resampling users
    users_high: float
    seeds_low: float | None  # 95% t-interval over the per-seed means (None for one seed)
    seeds_high: float | None
    seeds_better: int  # seeds where a's mean is above b's
    seeds: int

    def __str__(self) -> str:
        text = f"{self.mean:+.4f} (users: {self.users_low:+.4f} .. {self.users_high:+.4f}"
        if self.seeds_low is not None:
            text += f"; seeds: {self.seeds_low:+.4f} .. {self.seeds_high:+.4f}"
        return text + f"; better in {self.seeds_better}/{self.seeds} seeds)"


def paired_difference(
    a: np.ndarray, b: np.ndarray, draws: int = 2000, seed: int = 0
) -> PairedDifference:
    """``a`` and ``b`` are per-user scores [seeds, users] of two models on the same users."""
    a, b = np.atleast_2d(np.asarray(a, np.float64)), np.atleast_2d(np.asarray(b, np.float64))
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need equal, non-empty [seeds, users] arrays, got {a.shape}, {b.shape}")
    diff = a - b
    seeds, users = diff.shape
    rng = np.random.default_rng(seed)
    per_user = diff.mean(axis=0)  # the seed mean per user; resampling users keeps seeds paired
    boot = per_user[rng.integers(0, users, (draws, users))].mean(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    per_seed = diff.mean(axis=1)
    seeds_low = seeds_high = None
    if seeds > 1:
        half = t_quantile(seeds - 1) * per_seed.std(ddof=1) / np.sqrt(seeds)
        seeds_low, seeds_high = per_seed.mean() - half, per_seed.mean() + half
    return PairedDifference(
        float(diff.mean()), float(low), float(high),
        None if seeds_low is None else float(seeds_low),
        None if seeds_high is None else float(seeds_high),
        int((per_seed > 0).sum()), seeds,
    )  # fmt: skip
