"""Training examples: each user's training sequence cut into windows of at most ``max_len``
inputs, so that one epoch predicts every training position exactly once."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from ur4rec.data.batches import TrainBatch
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, Prefixes


class TrainWindows:
    """All windows as one left-padded [W, max_len + 1] tensor plus each window's user.

    A window ``w`` trains inputs ``w[:-1]`` to predict ``w[1:]``. Windows are cut from the end
    of the sequence: the last one holds the most recent ``max_len + 1`` items and each earlier
    one ends where the next one's first target starts.
    """

    def __init__(self, dataset: Dataset, train: Prefixes, max_len: int) -> None:
        rows: list[np.ndarray] = []
        positions: list[np.ndarray] = []
        users: list[int] = []
        later: list[int] = []  # the next later window of the same user, or -1
        last_window = np.full(dataset.n_users, -1, dtype=np.int64)
        for row, user in enumerate(train.users.tolist()):
            # Without the items the training part leaves out (new items of a cold split);
            # positions count the training items, as the template snapshots do.
            seq = train.items(dataset, row)
            end = len(seq)
            while end >= 2:
                start = max(0, end - max_len - 1)
                window = np.full(max_len + 1, PAD, dtype=np.int64)
                window[max_len + 1 - (end - start) :] = seq[start:end]
                position = np.full(max_len + 1, -1, dtype=np.int64)
                position[max_len + 1 - (end - start) :] = np.arange(start, end)
                positions.append(position)
                if last_window[user] < 0:
                    last_window[user] = len(rows)
                    later.append(-1)
                else:
                    later.append(len(rows) - 1)
                rows.append(window)
                users.append(user)
                end = start + 1
        self.windows = torch.from_numpy(np.stack(rows)) if rows else torch.empty(0, max_len + 1)
        # Where each window entry sits in its user's sequence (-1: padding).
        self.positions = (
            torch.from_numpy(np.stack(positions))
            if positions
            else torch.empty(0, max_len + 1, dtype=torch.int64)
        )
        self.users = torch.tensor(users, dtype=torch.int64)
        self.later = torch.tensor(later, dtype=torch.int64)
        self.last_window = torch.from_numpy(last_window)
        inputs = self.windows[:, :-1]
        self.n_targets = int((inputs != PAD).sum())

    def __len__(self) -> int:
        return len(self.windows)

    def batches(
        self, batch_size: int, generator: torch.Generator, shard: tuple[int, int] = (0, 1)
    ) -> Iterator[TrainBatch]:
        """Shuffled batches of windows; a target is PAD where its input is.

        ``shard`` = (rank, size): each batch of ``batch_size`` windows is dealt out across
        ``size`` processes, which all draw the same order from the same ``generator``, and
        this one gets every size-th window of it. A last batch with fewer windows than
        processes is left out, so every process takes the same number of steps."""
        rank, size = shard
        order = torch.randperm(len(self), generator=generator)
        for start in range(0, len(order), batch_size):
            index = order[start : start + batch_size]
            if size > 1:
                if len(index) < size:
                    break
                index = index[rank::size]
            window = self.windows[index]
            inputs = window[:, :-1]
            targets = torch.where(inputs != PAD, window[:, 1:], PAD)
            yield TrainBatch(self.users[index], index, inputs, targets)
