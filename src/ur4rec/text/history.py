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
    for user, length in zip(split.train.users.tolist(), split.train.lengths.tolist(), strict=True):
        start = int(dataset.offsets[user])
        items = tuple(
            SeenItem(
                dataset.item_ids[item],
                dataset.item_info[item],
                float(dataset.rating[start + k]),
                int(dataset.timestamp[start + k]),
            )
            for k, item in enumerate(dataset.sequence(user)[:length].tolist())
        )
        out.append(UserHistory(dataset.user_ids[user], items))
    return out
