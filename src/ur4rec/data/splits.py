"""Chronological splits. Every part is a prefix of a user's sequence, so no target can be
in its own input and nothing later than a target is seen before it.

- ``leave-one-out`` (default): train = all but the last two items; validation target = the
  second last item (input: the train part); test target = the last item (input: everything
  before it, the validation item included). Users with fewer than 3 interactions are
  train-only and not evaluated.
- ``ratio``: train = the first 80% of a sequence, validation = up to 90%,
  test = the rest. The validation target is the first item after the train part and the
  test target the first item after the 90% prefix, each with everything before it as input.
  Users whose validation or test part would be empty are not evaluated on it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ur4rec.data.dataset import Dataset
from ur4rec.errors import Ur4recError

SCHEMES = ("leave-one-out", "ratio")
PAD = -1


@dataclass(frozen=True)
class Prefixes:
    """For each listed user, the first ``lengths[i]`` items of their sequence (the input) and,
    for evaluation, the item right after them (the target)."""

    users: np.ndarray  # int64 internal user indices
    lengths: np.ndarray  # int64 prefix lengths

    def __len__(self) -> int:
        return len(self.users)


@dataclass(frozen=True)
class Split:
    scheme: str
    train: Prefixes  # every user; length may be 0
    valid: Prefixes
    test: Prefixes

    def part(self, name: str) -> Prefixes:
        if name not in ("valid", "test"):
            raise Ur4recError(f"unknown split {name!r}; use 'valid' or 'test'")
        return self.valid if name == "valid" else self.test


def make_split(dataset: Dataset, scheme: str = "leave-one-out") -> Split:
    lengths = dataset.lengths
    users = np.arange(dataset.n_users, dtype=np.int64)
    if scheme == "leave-one-out":
        evaluated = lengths >= 3
        train_len = np.where(evaluated, lengths - 2, lengths)
        valid = Prefixes(users[evaluated], lengths[evaluated] - 2)
        test = Prefixes(users[evaluated], lengths[evaluated] - 1)
    elif scheme == "ratio":
        train_len = np.floor(lengths * 0.8).astype(np.int64)
        valid_end = np.floor(lengths * 0.9).astype(np.int64)
        has_valid = (valid_end > train_len) & (train_len > 0)
        has_test = lengths > valid_end
        valid = Prefixes(users[has_valid], train_len[has_valid])
        test = Prefixes(users[has_test], valid_end[has_test])
    else:
        raise Ur4recError(f"unknown split scheme {scheme!r}; known: {', '.join(SCHEMES)}")
    return Split(scheme, Prefixes(users, train_len.astype(np.int64)), valid, test)


def targets(dataset: Dataset, prefixes: Prefixes) -> np.ndarray:
    """The item right after each prefix."""
    return dataset.item[dataset.offsets[prefixes.users] + prefixes.lengths]


def padded_prefixes(
    dataset: Dataset,
    users: np.ndarray,
    lengths: np.ndarray,
    max_len: int | None = None,
) -> torch.Tensor:
    """Left-padded [B, L] tensor of each user's prefix (the last ``max_len`` items if given),
    most recent item in the last column, PAD (-1) before it."""
    lengths = np.asarray(lengths, dtype=np.int64)
    kept = lengths if max_len is None else np.minimum(lengths, max_len)
    width = max(int(kept.max(initial=0)), 1)
    column = np.arange(width, dtype=np.int64)[None, :]
    start = dataset.offsets[users][:, None] + lengths[:, None] - width
    valid = column >= (width - kept[:, None])
    index = np.where(valid, start + column, 0)
    out = np.where(valid, dataset.item[index], PAD)
    return torch.from_numpy(out)


def prefix_mask(dataset: Dataset, prefixes: Prefixes) -> np.ndarray:
    """Boolean mask over the dataset's interactions: True inside the given prefixes."""
    starts = dataset.offsets[prefixes.users]
    # Mark each prefix's range with a difference array, then take the running sum.
    marks = np.zeros(dataset.n_interactions + 1, dtype=np.int64)
    np.add.at(marks, starts, 1)
    np.add.at(marks, starts + prefixes.lengths, -1)
    return np.cumsum(marks[:-1]) > 0


def interaction_counts(dataset: Dataset, prefixes: Prefixes) -> np.ndarray:
    """How often each item occurs in the given prefixes (e.g. training popularity)."""
    return np.bincount(dataset.item[prefix_mask(dataset, prefixes)], minlength=dataset.n_items)
