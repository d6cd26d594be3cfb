"""Readers for the larger public releases, through the import's polars readers: MovieLens-20M
(ratings.csv, movies.csv) and Amazon Reviews 2023 categories (reviews and meta JSON Lines)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from ur4rec.data.importer import ImportSpec, read_items, read_log
from ur4rec.data.raw import ItemInfo, RawData, sha256_file, split_title_year
from ur4rec.errors import DataError

# Amazon Reviews 2023 categories with a preset: release name -> category file stem.
AMAZON_CATEGORIES = {"amazon-2023-all-beauty": "All_Beauty"}


def expected_files(release: str) -> tuple[str, ...]:
    if release == "ml-20m":
        return ("ratings.csv", "movies.csv")
    category = AMAZON_CATEGORIES[release]
    return (f"{category}.jsonl.gz", f"meta_{category}.jsonl.gz")


def holds(folder: Path, release: str) -> bool:
    return all((folder / name).is_file() for name in expected_files(release))


def _raw(frame: pl.DataFrame, info: dict[str, ItemInfo], folder: Path, files: tuple[str, ...]):
    return RawData(
        users=[], items=[], ratings=frame["rating"].to_numpy(),
        timestamps=frame["timestamp"].to_numpy(), item_info=info, source=f"dir:{folder}",
        files={name: sha256_file(folder / name) for name in files}, table=frame,
    )  # fmt: skip


def read_ml20m(folder: Path) -> RawData:
    """GroupLens ml-20m: ratings.csv (userId, movieId, rating, timestamp) and movies.csv
    (movieId, title, genres), with headers."""
    folder = Path(folder)
    ratings, movies = expected_files("ml-20m")
    log = read_log(
        ImportSpec("ml-20m", str(folder / ratings), "userId", "movieId", "timestamp", "rating")
    )
    table = ImportSpec(
        "ml-20m", str(folder / ratings), item_col="movieId", items=str(folder / movies),
        title_col="title", category_col="genres",
    )  # fmt: skip
    info = {}
    for raw_id, item in read_items(table)[0].items():
        title, year = split_title_year(item.title)
        genres = tuple(g for g in item.genres if g != "(no genres listed)")
        info[raw_id] = ItemInfo(title, year, genres)
    return _raw(log, info, folder, (ratings, movies))


def read_amazon(folder: Path, release: str) -> RawData:
    """An Amazon Reviews 2023 category: reviews (user_id, parent_asin, rating, timestamp in
    ms) and item metadata (title, description and features as text, categories)."""
    folder = Path(folder)
    reviews, meta = expected_files(release)
    log = read_log(
        ImportSpec(release, str(folder / reviews), "user_id", "parent_asin", "timestamp", "rating")
    )
    table = ImportSpec(
        release, str(folder / reviews), item_col="parent_asin", items=str(folder / meta),
        title_col="title", text_cols=["description", "features"], category_col="categories",
    )  # fmt: skip
    info, _ = read_items(table)
    return _raw(log, info, folder, (reviews, meta))


def read_public(folder: Path, release: str) -> RawData:
    if not holds(folder, release):
        raise DataError(f"{folder}: expected the {release} files {list(expected_files(release))}")
    return read_ml20m(folder) if release == "ml-20m" else read_amazon(folder, release)
