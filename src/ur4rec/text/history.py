"""What a text generator may see of a user: the TRAINING part of their history, nothing else.

Generators receive a :class:`UserHistory`, never a dataset, so no validation or test item can
reach a prompt: building one is the only place that decides what is visible.
"""

from __future__ import annotations

from dataclasses import dataclass

from ur4rec.data.dataset import Dataset
from ur4rec.data.raw import ItemInfo
from ur4rec.data.splits import Split


@dataclass(frozen=True)
class SeenItem:
    raw_id: str
    info: ItemInfo
    rating: float
    timestamp: int


@dataclass(frozen=True)
class UserHistory:
    raw_user_id: str
    items: tuple[SeenItem, ...]  # chronological, oldest first


def training_histories(dataset: Dataset, split: Split) -> list[UserHistory]:
    """One history per user: the items of the split's training part only."""
    out = []
    train = split.train
    for row, user in enumerate(train.users.tolist()):
        start = int(dataset.offsets[user])
        items = tuple(
            SeenItem(
                dataset.item_ids[dataset.item[start + k]],
                dataset.item_info[dataset.item[start + k]],
                float(dataset.rating[start + k]),
                int(dataset.timestamp[start + k]),
            )
            for k in train.positions(dataset, row).tolist()
        )
        out.append(UserHistory(dataset.user_ids[user], items))
    return out
