"""Preprocessing into a prepared dataset, written once and reused.

A prepared dataset is a folder with ``interactions.npz`` (users' chronological sequences as
CSR arrays), ``vocab.json`` (raw <-> internal ids), ``items.json`` (title, year, genres) and
``manifest.json`` (options, counts, source, content hash).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ur4rec.data.raw import ItemInfo, RawData
from ur4rec.errors import DataError, Ur4recError
from ur4rec.io import atomic_directory

FORMAT_VERSION = 1


@dataclass(frozen=True)
class DatasetSpec:
    """How a named dataset is made from a raw release."""

    name: str
    release: str
    min_rating: float | None = None
    min_user_interactions: int = 0
    min_item_interactions: int = 0
    k_core: bool = False  # repeat the user/item filters until both hold
    # Keep every catalogue item in the vocabulary, interacted with or not, so every item id
    # of the source (1,682 for ml-100k) is scored.
    keep_catalog_items: bool = False

    def options(self) -> dict[str, object]:
        return {k: v for k, v in asdict(self).items() if k != "name"}


DATASETS: dict[str, DatasetSpec] = {
    "ml-100k": DatasetSpec("ml-100k", "ml-100k"),
    # The ratings users liked (>= 4), users with at least 5 of them, every catalogue item.
    "ml-100k-liked": DatasetSpec(
        "ml-100k-liked", "ml-100k", min_rating=4.0, min_user_interactions=5,
        keep_catalog_items=True,
    ),
    "ml-1m": DatasetSpec("ml-1m", "ml-1m"),
}  # fmt: skip
# Earlier names, still accepted (runs and commands that use them keep working).
DATASET_ALIASES = {"ml-100k-seed": "ml-100k-liked"}


def canonical_dataset(name: str) -> str:
    return DATASET_ALIASES.get(name, name)


def get_spec(name: str) -> DatasetSpec:
    try:
        return DATASETS[canonical_dataset(name)]
    except KeyError:
        raise Ur4recError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}") from None


@dataclass
class Dataset:
    """Users' chronological interaction sequences with dense ids.

    ``item[offsets[u]:offsets[u + 1]]`` is user ``u``'s sequence, oldest first.
    """

    name: str
    user_ids: list[str]  # internal index -> raw id
    item_ids: list[str]
    item_info: list[ItemInfo]
    offsets: np.ndarray  # int64, n_users + 1
    item: np.ndarray  # int64
    rating: np.ndarray  # float32
    timestamp: np.ndarray  # int64
    manifest: dict

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.item_ids)

    @property
    def n_interactions(self) -> int:
        return len(self.item)

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def sequence(self, user: int) -> np.ndarray:
        return self.item[self.offsets[user] : self.offsets[user + 1]]

    def user_index(self, raw_id: str) -> int:
        index = self._user_lookup().get(str(raw_id))
        if index is None:
            raise Ur4recError(f"unknown user id {raw_id!r} in dataset {self.name}")
        return index

    def item_index(self, raw_id: str) -> int:
        index = self._item_lookup().get(str(raw_id))
        if index is None:
            raise Ur4recError(f"unknown item id {raw_id!r} in dataset {self.name}")
        return index

    def add_items(self, raw_ids: list[str], infos: list[ItemInfo]) -> None:
        """Append catalogue items that have no interactions (items that arrived after the
        data was prepared); they take the next indices."""
        taken = [raw for raw in raw_ids if raw in self._item_lookup()]
        if taken or len(set(raw_ids)) != len(raw_ids):
            raise DataError(f"item id(s) already in dataset {self.name}: {taken or raw_ids}")
        lookup = self._item_lookup()
        for raw in raw_ids:
            lookup[raw] = len(self.item_ids)
            self.item_ids.append(raw)
        self.item_info.extend(infos)

    def _user_lookup(self) -> dict[str, int]:
        if not hasattr(self, "_users_cache"):
            self._users_cache = {raw: i for i, raw in enumerate(self.user_ids)}
        return self._users_cache

    def _item_lookup(self) -> dict[str, int]:
        if not hasattr(self, "_items_cache"):
            self._items_cache = {raw: i for i, raw in enumerate(self.item_ids)}
        return self._items_cache

    @property
    def content_hash(self) -> str:
        return str(self.manifest["content_hash"])


def _sorted_ids(ids: np.ndarray) -> np.ndarray:
    """Unique raw ids, numerically ordered when all are integers, else lexically."""
    unique = np.unique(ids)
    if all(s.isdigit() for s in unique):
        return unique[np.argsort(unique.astype(np.int64), kind="stable")]
    return unique


def _index_of(vocab: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Positions of ``values`` in ``vocab`` (every value must be present)."""
    order = np.argsort(vocab)
    return order[np.searchsorted(vocab, values, sorter=order)]


def _duplicates(users: np.ndarray, items: np.ndarray, stamps: np.ndarray) -> np.ndarray:
    """True for each row that repeats an earlier row's (user, item, timestamp)."""
    _, first = np.unique(
        np.rec.fromarrays([users, items, stamps], names="u,i,t"), return_index=True
    )
    repeated = np.ones(len(users), dtype=bool)
    repeated[first] = False
    return repeated


def _filter(users: np.ndarray, items: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Boolean mask of interactions kept by the per-user / per-item minimum counts."""
    keep = np.ones(len(users), dtype=bool)
    while True:
        before = int(keep.sum())
        if spec.min_item_interactions > 0:
            _, inverse, counts = np.unique(items[keep], return_inverse=True, return_counts=True)
            keep[np.flatnonzero(keep)[counts[inverse] < spec.min_item_interactions]] = False
        if spec.min_user_interactions > 0:
            _, inverse, counts = np.unique(users[keep], return_inverse=True, return_counts=True)
            keep[np.flatnonzero(keep)[counts[inverse] < spec.min_user_interactions]] = False
        if not spec.k_core or int(keep.sum()) == before:
            return keep


def preprocess(raw: RawData, spec: DatasetSpec) -> Dataset:
    """Filter, order chronologically (timestamp, then source-file position) and remap ids."""
    users = np.asarray(raw.users, dtype=str)
    items = np.asarray(raw.items, dtype=str)
    ratings, stamps = raw.ratings, raw.timestamps
    position = np.arange(len(users), dtype=np.int64)
    # A NaN or infinite rating is no rating: such rows are dropped and counted.
    keep = np.isfinite(ratings)
    non_finite = int((~keep).sum())
    # The same (user, item, time) twice is one event logged twice: the first row is kept.
    duplicate = _duplicates(users, items, stamps)
    duplicates = int((duplicate & keep).sum())
    keep &= ~duplicate
    if spec.min_rating is not None:
        keep &= ratings >= spec.min_rating
    users, items, ratings, stamps, position = (
        a[keep] for a in (users, items, ratings, stamps, position)
    )
    keep = _filter(users, items, spec)
    users, items, ratings, stamps, position = (
        a[keep] for a in (users, items, ratings, stamps, position)
    )
    if len(users) == 0:
        raise DataError(f"{spec.name}: no interactions left after filtering ({spec.options()})")

    unknown = sorted(set(np.unique(items).tolist()) - set(raw.item_info), key=lambda s: (len(s), s))
    if unknown:
        raise DataError(
            f"{raw.source}: {len(unknown)} rated item id(s) have no metadata, e.g. {unknown[:5]}"
        )
    user_vocab = _sorted_ids(users)
    catalogue = np.asarray(list(raw.item_info), dtype=str)
    item_vocab = _sorted_ids(catalogue if spec.keep_catalog_items else items)
    user_index, item_index = _index_of(user_vocab, users), _index_of(item_vocab, items)

    order = np.lexsort((position, stamps, user_index))
    user_index, item_index = user_index[order], item_index[order]
    counts = np.bincount(user_index, minlength=len(user_vocab))
    offsets = np.zeros(len(user_vocab) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    dataset = Dataset(
        name=spec.name,
        user_ids=[str(u) for u in user_vocab],
        item_ids=[str(i) for i in item_vocab],
        item_info=[raw.item_info[str(i)] for i in item_vocab],
        offsets=offsets,
        item=item_index.astype(np.int64),
        rating=ratings[order].astype(np.float32),
        timestamp=stamps[order].astype(np.int64),
        manifest={},
    )
    dataset.manifest = {
        "format_version": FORMAT_VERSION,
        "name": spec.name,
        "options": spec.options(),
        "counts": {
            "users": dataset.n_users,
            "items": dataset.n_items,
            "interactions": dataset.n_interactions,
            "density": round(dataset.n_interactions / (dataset.n_users * dataset.n_items), 6),
            "min_user_length": int(counts.min()),
            "median_user_length": float(np.median(counts)),
        },
        "dropped": {"non_finite_ratings": non_finite, "duplicate_events": duplicates},
        "source": raw.source,
        "source_files": raw.files,
        "content_hash": _content_hash(dataset),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    return dataset


def _arrays_bytes(dataset: Dataset) -> bytes:
    buffer = io.BytesIO()
    np.savez(
        buffer,
        offsets=dataset.offsets,
        item=dataset.item,
        rating=dataset.rating,
        timestamp=dataset.timestamp,
    )
    return buffer.getvalue()


def _vocab_json(dataset: Dataset) -> str:
    return json.dumps({"users": dataset.user_ids, "items": dataset.item_ids})


def _items_json(dataset: Dataset) -> str:
    rows = [
        {"raw_id": raw, **info.to_json()}
        for raw, info in zip(dataset.item_ids, dataset.item_info, strict=True)
    ]
    return json.dumps(rows, ensure_ascii=False, indent=0)


def _content_hash(dataset: Dataset) -> str:
    digest = hashlib.sha256()
    for array in (dataset.offsets, dataset.item, dataset.rating, dataset.timestamp):
        digest.update(np.ascontiguousarray(array).tobytes())
    digest.update(_vocab_json(dataset).encode())
    digest.update(_items_json(dataset).encode())
    return digest.hexdigest()


def save_dataset(dataset: Dataset, folder: Path) -> None:
    """Write the dataset folder atomically: all four files appear together or not at all."""
    with atomic_directory(folder) as staging:
        (staging / "interactions.npz").write_bytes(_arrays_bytes(dataset))
        (staging / "vocab.json").write_text(_vocab_json(dataset), encoding="utf-8")
        (staging / "items.json").write_text(_items_json(dataset), encoding="utf-8")
        (staging / "manifest.json").write_text(
            json.dumps(dataset.manifest, indent=2) + "\n", encoding="utf-8"
        )


def load_dataset(folder: Path) -> Dataset:
    """Read a prepared dataset folder, checking its content hash."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(f"{folder}: not a prepared dataset (no manifest.json)")
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
        rows = json.loads((folder / "items.json").read_text(encoding="utf-8"))
        with np.load(folder / "interactions.npz", allow_pickle=False) as arrays:
            offsets, item = arrays["offsets"], arrays["item"]
            rating, timestamp = arrays["rating"], arrays["timestamp"]
        dataset = Dataset(
            name=canonical_dataset(str(manifest["name"])),
            user_ids=list(vocab["users"]),
            item_ids=list(vocab["items"]),
            item_info=[ItemInfo.from_json(row) for row in rows],
            offsets=offsets,
            item=item,
            rating=rating,
            timestamp=timestamp,
            manifest=manifest,
        )
    except DataError as exc:
        raise DataError(
            f"{folder}: prepared dataset is unreadable ({exc}); prepare it again"
        ) from None
    # A truncated .npz raises BadZipFile or EOFError; a hand-edited JSON file KeyError or
    # TypeError: every one means the same to the user.
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile) as exc:
        what = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise DataError(
            f"{folder}: prepared dataset is unreadable ({what}); prepare it again"
        ) from exc
    if _content_hash(dataset) != manifest.get("content_hash"):
        raise DataError(f"{folder}: content hash does not match the manifest; prepare it again")
    return dataset
