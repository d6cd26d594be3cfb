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
- ``cold-items`` (``cold-items:SHARE``): leave-one-out positions, but a fixed share of items
  (default 0.2, drawn from a fixed seed within each popularity quintile, so cold items are not
  only rare ones) plus half as many again for validation are new items: every interaction with
  them is left out of the training part, so no model sees them as a target or an input during
  training. Evaluation inputs keep them (a history is what the user did). Users whose
  validation target is a test-only new item are not evaluated on validation, so model
  selection never sees those items.
- ``cold-time`` (``cold-time:QUANTILE``): a global time cut at the interactions' timestamp
  quantile (default 0.6), the way new items arrive. Training is every interaction before the
  cut; users with at least two interactions after it are evaluated on their last two items
  (validation: the second last, test: the last), with everything before as input. Items first
  seen after the cut are new, and so are users who start after it (no training items).
- ``rehearsal``: leave-one-out one step back. Each user's last item is left out of every
  part, so the test target is leave-one-out's validation target (input: the same training
  part plus leave-one-out's training part's last item, that is, the item before it) and the
  validation target is the item before that. Test figures on it are validation figures of
  leave-one-out: a way to choose on validation what the validation split cannot measure, such
  as a refit, which trains on the validation targets. Users with fewer than 4 interactions
  are train-only.

In every scheme an item's training interactions decide its group: ``cold`` (none), ``tail``,
``head`` (eval/groups.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ur4rec.data.dataset import Dataset
from ur4rec.errors import Ur4recError
from ur4rec.measures import SCHEMES, parse_scheme, scheme_ok

__all__ = ["SCHEMES", "parse_scheme", "scheme_ok"]  # the scheme grammar lives in measures.py

PAD = -1
COLD_SEED = 20261201  # which items are new: fixed, so every model and seed sees the same ones
COLD_SHARE = 0.2  # cold-items: test-only new items; half as many more are validation's
COLD_TIME_QUANTILE = 0.6


@dataclass(frozen=True)
class Prefixes:
    """For each listed user, the first ``lengths[i]`` items of their sequence (the input) and,
    for evaluation, the item right after them (the target)."""

    users: np.ndarray  # int64 internal user indices
    lengths: np.ndarray  # int64 prefix lengths
    # Items left out inside these prefixes (bool over items; cold-items' training part).
    skip: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.users)

    def items(self, dataset: Dataset, row: int) -> np.ndarray:
        """Row ``row``'s items in order, without skipped items."""
        return dataset.sequence(int(self.users[row]))[self.positions(dataset, row)]

    def positions(self, dataset: Dataset, row: int) -> np.ndarray:
        """Where row ``row``'s kept items sit in the user's sequence."""
        length = int(self.lengths[row])
        index = np.arange(length)
        if self.skip is None:
            return index
        return index[~self.skip[dataset.sequence(int(self.users[row]))[:length]]]


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


def cold_item_sets(
    dataset: Dataset, share: float = COLD_SHARE, seed: int = COLD_SEED
) -> tuple[np.ndarray, np.ndarray]:
    """(test-only, validation) new items as bool masks: within each popularity quintile of the
    items that occur, a ``share`` of the items, then half as many again, at random."""
    counts = np.bincount(dataset.item, minlength=dataset.n_items)
    occurring = np.flatnonzero(counts > 0)
    rng = np.random.default_rng(seed)
    test = np.zeros(dataset.n_items, dtype=bool)
    valid = np.zeros(dataset.n_items, dtype=bool)
    # Quintiles by rank (stable on ties), so equal counts never make an empty stratum.
    order = occurring[np.argsort(counts[occurring], kind="stable")]
    for stratum in np.array_split(order, 5):
        picked = rng.permutation(stratum)
        n_test = round(share * len(stratum))
        n_valid = round(share / 2 * len(stratum))
        test[picked[:n_test]] = True
        valid[picked[n_test : n_test + n_valid]] = True
    return test, valid


def make_split(dataset: Dataset, scheme: str = "leave-one-out") -> Split:
    lengths = dataset.lengths
    users = np.arange(dataset.n_users, dtype=np.int64)
    kind, value = parse_scheme(scheme)
    if kind == "cold-items":
        test_new, valid_new = cold_item_sets(dataset, value or COLD_SHARE)
        evaluated = lengths >= 3
        train_len = np.where(evaluated, lengths - 2, lengths)
        valid = Prefixes(users[evaluated], lengths[evaluated] - 2)
        # Validation never measures a test-only new item.
        keep = ~test_new[targets(dataset, valid)]
        valid = Prefixes(valid.users[keep], valid.lengths[keep])
        test = Prefixes(users[evaluated], lengths[evaluated] - 1)
        train = Prefixes(users, train_len.astype(np.int64), skip=test_new | valid_new)
        return Split(scheme, train, valid, test)
    if kind == "cold-time":
        cut = np.quantile(dataset.timestamp, value or COLD_TIME_QUANTILE)
        owner = np.repeat(users, lengths)
        # Sequences are chronological, so the interactions before the cut are a prefix.
        train_len = np.bincount(owner[dataset.timestamp < cut], minlength=dataset.n_users)
        train_len = train_len.astype(np.int64)
        evaluated = lengths - train_len >= 2  # users without training items included
        valid = Prefixes(users[evaluated], lengths[evaluated] - 2)
        test = Prefixes(users[evaluated], lengths[evaluated] - 1)
        return Split(scheme, Prefixes(users, train_len), valid, test)
    if kind in ("leave-one-out", "rehearsal"):
        # A rehearsal is leave-one-out over every sequence without its last item.
        back = 1 if kind == "rehearsal" else 0
        evaluated = lengths >= 3 + back
        train_len = np.where(evaluated, lengths - 2 - back, np.maximum(lengths - back, 0))
        valid = Prefixes(users[evaluated], lengths[evaluated] - 2 - back)
        test = Prefixes(users[evaluated], lengths[evaluated] - 1 - back)
    else:  # ratio
        train_len = np.floor(lengths * 0.8).astype(np.int64)
        valid_end = np.floor(lengths * 0.9).astype(np.int64)
        has_valid = (valid_end > train_len) & (train_len > 0)
        has_test = lengths > valid_end
        valid = Prefixes(users[has_valid], train_len[has_valid])
        test = Prefixes(users[has_test], valid_end[has_test])
    return Split(scheme, Prefixes(users, train_len.astype(np.int64)), valid, test)


def with_validation_targets(dataset: Dataset, split: Split) -> Prefixes:
    """The training part with each validated user's validation target appended: what a refit
    (train/refit.py) trains on once validation has chosen its epochs. The test targets stay
    out. Needs a scheme whose validation input is the training part itself (not cold-time,
    whose validation input runs past the time cut)."""
    train = split.train
    row = np.full(dataset.n_users, -1, dtype=np.int64)
    row[train.users] = np.arange(len(train), dtype=np.int64)
    at = row[split.valid.users]
    if (at < 0).any() or (train.lengths[at] != split.valid.lengths).any():
        raise Ur4recError(
            f"scheme {split.scheme!r}: a validation input is not its user's training part, so "
            "there is no training part to add the validation targets to"
        )
    lengths = train.lengths.copy()
    lengths[at] += 1
    return Prefixes(train.users, lengths, train.skip)


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
    mask = np.cumsum(marks[:-1]) > 0
    if prefixes.skip is not None:
        mask &= ~prefixes.skip[dataset.item]
    return mask


def interaction_counts(dataset: Dataset, prefixes: Prefixes) -> np.ndarray:
    """How often each item occurs in the given prefixes (e.g. training popularity)."""
    return np.bincount(dataset.item[prefix_mask(dataset, prefixes)], minlength=dataset.n_items)


def repeats_items(dataset: Dataset, prefixes: Prefixes, chunk: int = 1 << 22) -> bool:
    """Whether some user's prefix holds an item more than once (a log of repeat consumption:
    plays, purchases). Read a block of about ``chunk`` interactions at a time."""
    if len(prefixes) == 0:
        return False
    order = np.argsort(prefixes.users, kind="stable")
    users, lengths = prefixes.users[order], prefixes.lengths[order]
    starts = dataset.offsets[users]
    keep = None if prefixes.skip is None else ~prefixes.skip
    ends = np.cumsum(lengths)
    first = 0
    while first < len(users):
        # Users first .. last - 1: at least one, and about ``chunk`` interactions.
        last = int(np.searchsorted(ends, (ends[first] - lengths[first]) + chunk, side="right"))
        last = max(last, first + 1)
        n = lengths[first:last]
        owner = np.repeat(np.arange(last - first, dtype=np.int64), n)
        within = np.arange(int(n.sum()), dtype=np.int64) - np.repeat(np.cumsum(n) - n, n)
        items = dataset.item[np.repeat(starts[first:last], n) + within].astype(np.int64)
        if keep is not None:
            owner, items = owner[keep[items]], items[keep[items]]
        keys = owner * dataset.n_items + items
        if len(np.unique(keys)) < len(keys):
            return True
        first = last
    return False
