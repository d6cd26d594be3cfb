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
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

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
    "ml-20m": DatasetSpec("ml-20m", "ml-20m", min_rating=4.0, min_user_interactions=5),
    # Reviews as interactions, 5-core (the usual setting for this data), text from metadata.
    "amazon-beauty": DatasetSpec(
        "amazon-beauty", "amazon-2023-all-beauty", min_user_interactions=5,
        min_item_interactions=5, k_core=True,
    ),
}  # fmt: skip
# Presets whose items are not films: the words their texts use (text/domain.py).
PRESET_DOMAINS = {"amazon-beauty": "products"}
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


def sorted_ids(ids: pl.Series) -> pl.Series:
    """Unique raw ids, numerically ordered when all are digit strings, else lexically (UTF-8
    byte order, which is code-point order)."""
    unique = ids.unique()
    frame = pl.DataFrame({"id": unique})
    if bool(unique.str.contains(r"^[0-9]+$").all()):
        # By value without parsing (ids may exceed 64 bits): leading zeros off, then length.
        bare = pl.col("id").str.strip_chars_start("0")
        frame = frame.sort([bare.str.len_bytes(), bare, pl.col("id")])
    else:
        frame = frame.sort("id")
    return frame["id"]


def _index(frame: pl.DataFrame, column: str, vocab: pl.Series, name: str) -> pl.DataFrame:
    """``frame`` with ``name``: the position of ``column``'s value in ``vocab``."""
    lookup = pl.DataFrame({column: vocab, name: pl.arange(0, len(vocab), eager=True)})
    return frame.join(lookup, on=column, how="left", maintain_order="left")


def preprocess(raw: RawData, spec: DatasetSpec) -> Dataset:
    """Filter, order chronologically (timestamp, then source-file position) and remap ids."""
    return build_dataset(raw.frame(), raw.item_info, spec, source=raw.source, files=raw.files)


def build_dataset(
    frame: pl.DataFrame,
    item_info: Mapping[str, ItemInfo],
    spec: DatasetSpec,
    *,
    source: str,
    files: Mapping[str, str],
    fill_missing_info: bool = False,
    manifest: Mapping[str, object] | None = None,
) -> Dataset:
    """The prepared dataset from interactions in source order (columns user, item: str;
    rating: float32; timestamp: int64).

    Rows with a NaN or infinite rating are dropped, and so is every repeat of an earlier
    (user, item, time) row: one event logged twice. Both are counted in the manifest. Then come
    the rating threshold and the per-item / per-user minimums (repeated until both hold with
    ``k_core``). Items in the log without metadata are an error, or with ``fill_missing_info``
    get their id as title (counted). ``manifest`` adds entries to the manifest.
    """
    df = frame.select("user", "item", "rating", "timestamp").with_row_index("position")
    finite = pl.col("rating").is_finite()
    first = pl.struct("user", "item", "timestamp").is_first_distinct()
    df = df.with_columns(finite.alias("finite"), first.alias("first"))
    non_finite = int(df.select((~pl.col("finite")).sum()).item())
    duplicates = int(df.select((pl.col("finite") & ~pl.col("first")).sum()).item())
    df = df.filter(pl.col("finite") & pl.col("first")).drop("finite", "first")
    emptied = "the log holds no rows" if frame.height == 0 else None
    if emptied is None and df.height == 0:
        emptied = "every row has a non-finite rating"
    if spec.min_rating is not None and emptied is None:
        df = df.filter(pl.col("rating") >= spec.min_rating)
        if df.height == 0:
            emptied = f"no rating is at least {spec.min_rating:g} (min_rating)"
    while emptied is None:
        before = df.height
        if spec.min_item_interactions > 0:
            df = df.filter(pl.len().over("item") >= spec.min_item_interactions)
            if df.height == 0:
                emptied = (
                    f"no item has {spec.min_item_interactions} interactions (min_item_interactions)"
                )
                break
        if spec.min_user_interactions > 0:
            df = df.filter(pl.len().over("user") >= spec.min_user_interactions)
            if df.height == 0:
                emptied = (
                    f"no user has {spec.min_user_interactions} interactions (min_user_interactions)"
                )
                break
        if not spec.k_core or df.height == before:
            break
    if emptied is not None:
        raise DataError(f"{spec.name}: no interactions left after filtering: {emptied}")

    log_items = df["item"].unique()
    known = set(item_info)
    unknown = [i for i in log_items.to_list() if i not in known]
    if unknown and not fill_missing_info:
        unknown.sort(key=lambda s: (len(s), s))
        raise DataError(
            f"{source}: {len(unknown)} rated item id(s) have no metadata, e.g. {unknown[:5]}"
        )
    user_vocab = sorted_ids(df["user"])
    items = log_items
    if spec.keep_catalog_items:
        items = pl.concat([log_items, pl.Series(list(item_info), dtype=pl.String)])
    item_vocab = sorted_ids(items)
    df = _index(df, "user", user_vocab, "u")
    df = _index(df, "item", item_vocab, "i").sort(["u", "timestamp", "position"])
    user_index = df["u"].to_numpy().astype(np.int64)
    counts = np.bincount(user_index, minlength=len(user_vocab))
    offsets = np.zeros(len(user_vocab) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])

    item_ids = item_vocab.to_list()
    dropped: dict[str, int] = {"non_finite_ratings": non_finite, "duplicate_events": duplicates}
    # Items of the log without metadata stay, titled by their id.
    filled = {"filled": {"items_without_metadata": len(unknown)}} if fill_missing_info else {}
    return finish_dataset(
        spec.name,
        user_vocab.to_list(),
        item_ids,
        [item_info.get(i) or ItemInfo(i, None, ()) for i in item_ids],
        offsets,
        df["i"].to_numpy().astype(np.int64),
        df["rating"].to_numpy().astype(np.float32),
        df["timestamp"].to_numpy().astype(np.int64),
        {"options": spec.options(), "dropped": dropped, "source": source,
         "source_files": dict(files), **filled, **(manifest or {})},
    )  # fmt: skip


def finish_dataset(
    name: str,
    user_ids: list[str],
    item_ids: list[str],
    item_info: list[ItemInfo],
    offsets: np.ndarray,
    item: np.ndarray,
    rating: np.ndarray,
    timestamp: np.ndarray,
    manifest: Mapping[str, object],
) -> Dataset:
    """A :class:`Dataset` from its final arrays, with the manifest's counts and content hash
    (``manifest`` adds options, source and the like)."""
    dataset = Dataset(
        name=name, user_ids=user_ids, item_ids=item_ids, item_info=item_info, offsets=offsets,
        item=item, rating=rating, timestamp=timestamp, manifest={},
    )  # fmt: skip
    lengths = np.diff(offsets)
    dataset.manifest = {
        "format_version": FORMAT_VERSION,
        "name": name,
        "options": {},
        "counts": {
            "users": dataset.n_users,
            "items": dataset.n_items,
            "interactions": dataset.n_interactions,
            "density": round(dataset.n_interactions / (dataset.n_users * dataset.n_items), 6),
            "min_user_length": int(lengths.min()),
            "median_user_length": float(np.median(lengths)),
        },
        "dropped": {},
        **manifest,
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
