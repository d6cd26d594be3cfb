"""Readers for the raw MovieLens files: GroupLens releases and RecBole's atomic files.

Every reader returns a :class:`RawData` and names the file and line of anything it cannot parse.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl

from ur4rec.errors import DataError

# u.genre of the ml-100k release, in column order; used when u.genre is absent.
ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime",
    "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
    "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_TITLE_YEAR = re.compile(r"^(.*?)\s*\((\d{4})\)\s*$")


@dataclass(frozen=True)
class ItemInfo:
    """Metadata of one item, in any domain: its title, a year when known, its categories
    (genres, for films), free text (a description) and numeric attributes (price, ...)."""

    title: str
    year: int | None
    genres: tuple[str, ...]  # the item's categories
    description: str = ""
    attributes: tuple[tuple[str, float], ...] = ()

    @property
    def categories(self) -> tuple[str, ...]:
        return self.genres

    def to_json(self) -> dict[str, object]:
        # Only what is set: a MovieLens item's JSON (and so the dataset's hash) stays as it was.
        obj: dict[str, object] = {
            "title": self.title,
            "year": self.year,
            "genres": list(self.genres),
        }
        if self.description:
            obj["description"] = self.description
        if self.attributes:
            obj["attributes"] = dict(self.attributes)
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> ItemInfo:
        if not isinstance(obj, dict) or not isinstance(obj.get("title"), str):
            raise DataError(f"item metadata needs a 'title' string, got {obj!r:.200}")
        year = obj.get("year")
        genres = obj.get("genres") or []
        if not isinstance(genres, list) or not all(isinstance(g, str) for g in genres):
            raise DataError(f"item {obj['title']!r}: 'genres' must be a list of strings")
        if year is not None and (not isinstance(year, int) or isinstance(year, bool)):
            raise DataError(f"item {obj['title']!r}: 'year' must be an integer or null")
        description = obj.get("description") or ""
        if not isinstance(description, str):
            raise DataError(f"item {obj['title']!r}: 'description' must be a string")
        attributes = obj.get("attributes") or {}
        if not isinstance(attributes, dict) or not all(
            isinstance(v, int | float) and not isinstance(v, bool) for v in attributes.values()
        ):
            raise DataError(f"item {obj['title']!r}: 'attributes' must map names to numbers")
        pairs = tuple((str(k), float(v)) for k, v in attributes.items())
        return cls(obj["title"], year, tuple(genres), description, pairs)


@dataclass
class RawData:
    """Interactions in source-file order plus item metadata keyed by raw item id."""

    users: list[str]
    items: list[str]
    ratings: np.ndarray  # float32
    timestamps: np.ndarray  # int64
    item_info: dict[str, ItemInfo]
    source: str
    files: dict[str, str] = field(default_factory=dict)  # file name -> sha256
    # Large releases are read as a table; then users and items are left empty.
    table: pl.DataFrame | None = None

    def __len__(self) -> int:
        return len(self.users) if self.table is None else self.table.height

    def frame(self) -> pl.DataFrame:
        """The interactions as a table (user, item, rating, timestamp), in source order."""
        if self.table is not None:
            return self.table
        return pl.DataFrame(
            {
                "user": pl.Series(self.users, dtype=pl.String),
                "item": pl.Series(self.items, dtype=pl.String),
                "rating": pl.Series(self.ratings, dtype=pl.Float32),
                "timestamp": pl.Series(self.timestamps, dtype=pl.Int64),
            }
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def split_title_year(title: str) -> tuple[str, int | None]:
    """'Toy Story (1995)' -> ('Toy Story', 1995); a title without a year keeps year None."""
    match = _TITLE_YEAR.match(title.strip())
    if match:
        return match.group(1).strip(), int(match.group(2))
    return title.strip(), None


def _lines(path: Path, encoding: str) -> Iterator[tuple[int, str]]:
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    try:
        with open(path, encoding=encoding, newline="") as f:
            for lineno, line in enumerate(f, start=1):
                line = line.rstrip("\r\n")
                if line.strip():
                    yield lineno, line
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not readable as {encoding} text ({exc.reason})") from exc


def _parse_number(path: Path, lineno: int, column: str, value: str, kind: type) -> float | int:
    try:
        return kind(value)
    except ValueError:
        raise DataError(
            f"{path}:{lineno}: column '{column}' should be {kind.__name__}, got {value!r}"
        ) from None


INT64_MAX = 2**63 - 1


def _parse_timestamp(path: Path, lineno: int, value: str) -> int:
    """An integer timestamp ("881250949" or "881250949.0") that fits in 64 bits."""
    text = value.strip()
    try:
        stamp = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            number = math.nan
        if not math.isfinite(number) or number != int(number):
            raise DataError(
                f"{path}:{lineno}: column 'timestamp' should be int, got {value!r}"
            ) from None
        stamp = int(number)
    if not -INT64_MAX <= stamp <= INT64_MAX:
        raise DataError(
            f"{path}:{lineno}: timestamp {value.strip()!r} is out of range (64-bit integers)"
        )
    return stamp


def _read_ratings(path: Path, sep: str, encoding: str = "latin-1") -> tuple[list, list, list, list]:
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[int] = []
    for lineno, line in _lines(path, encoding):
        fields = line.split(sep)
        if len(fields) != 4:
            raise DataError(
                f"{path}:{lineno}: expected 4 fields (user, item, rating, timestamp) "
                f"separated by {sep!r}, found {len(fields)}"
            )
        user, item, rating, stamp = (x.strip() for x in fields)
        if not user or not item:
            raise DataError(f"{path}:{lineno}: empty user or item id")
        users.append(user)
        items.append(item)
        ratings.append(_parse_number(path, lineno, "rating", rating, float))
        stamps.append(_parse_timestamp(path, lineno, stamp))
    if not users:
        raise DataError(f"{path}: no interactions found")
    return users, items, ratings, stamps


def _finish(users, items, ratings, stamps, info, source, files) -> RawData:
    return RawData(
        users=users,
        items=items,
        ratings=np.asarray(ratings, dtype=np.float32),
        timestamps=np.asarray(stamps, dtype=np.int64),
        item_info=info,
        source=source,
        files={p.name: sha256_file(p) for p in files},
    )


def read_ml100k(folder: Path) -> RawData:
    """GroupLens ml-100k: u.data (tab separated) and u.item ('|' separated, latin-1)."""
    folder = Path(folder)
    data, item_file, genre_file = folder / "u.data", folder / "u.item", folder / "u.genre"
    users, items, ratings, stamps = _read_ratings(data, "\t")
    genres = list(ML100K_GENRES)
    if genre_file.is_file():
        genres = [line.split("|")[0] for _, line in _lines(genre_file, "latin-1")]
    info: dict[str, ItemInfo] = {}
    for lineno, line in _lines(item_file, "latin-1"):
        fields = line.split("|")
        if len(fields) != 5 + len(genres):
            raise DataError(
                f"{item_file}:{lineno}: expected {5 + len(genres)} '|'-separated fields, "
                f"found {len(fields)}"
            )
        flags = fields[5:]
        if any(flag not in ("0", "1") for flag in flags):
            raise DataError(f"{item_file}:{lineno}: genre flags must be 0 or 1, got {flags}")
        title, year = split_title_year(fields[1])
        if year is None and re.search(r"\d{4}$", fields[2].strip()):
            year = int(fields[2].strip()[-4:])
        chosen = tuple(
            g for g, flag in zip(genres, flags, strict=True) if flag == "1" and g != "unknown"
        )
        info[fields[0].strip()] = ItemInfo(title, year, chosen)
    return _finish(users, items, ratings, stamps, info, f"dir:{folder}", [data, item_file])


def read_ml1m(folder: Path) -> RawData:
    """GroupLens ml-1m: ratings.dat and movies.dat, '::' separated, latin-1."""
    folder = Path(folder)
    data, item_file = folder / "ratings.dat", folder / "movies.dat"
    users, items, ratings, stamps = _read_ratings(data, "::")
    info: dict[str, ItemInfo] = {}
    for lineno, line in _lines(item_file, "latin-1"):
        fields = line.split("::")
        if len(fields) != 3:
            raise DataError(
                f"{item_file}:{lineno}: expected 3 '::'-separated fields "
                f"(id, title, genres), found {len(fields)}"
            )
        title, year = split_title_year(fields[1])
        genres = tuple(g for g in fields[2].split("|") if g and g != "(no genres listed)")
        info[fields[0].strip()] = ItemInfo(title, year, genres)
    return _finish(users, items, ratings, stamps, info, f"dir:{folder}", [data, item_file])


def _atomic_header(path: Path, expected: tuple[str, ...]) -> tuple[Iterator, list[str]]:
    lines = _lines(path, "utf-8")
    try:
        _, header = next(lines)
    except StopIteration:
        raise DataError(f"{path}: empty file") from None
    names = [column.split(":")[0] for column in header.split("\t")]
    missing = [c for c in expected if c not in names]
    if missing:
        raise DataError(f"{path}:1: missing column(s) {missing}; header has {names}")
    return lines, names


def read_recbole_atomic(folder: Path, name: str = "ml-100k") -> RawData:
    """RecBole atomic files: NAME.inter and NAME.item, tab separated with typed headers."""
    folder = Path(folder)
    inter, item_file = folder / f"{name}.inter", folder / f"{name}.item"
    lines, names = _atomic_header(inter, ("user_id", "item_id", "rating", "timestamp"))
    col = {c: names.index(c) for c in ("user_id", "item_id", "rating", "timestamp")}
    users: list[str] = []
    items: list[str] = []
    ratings: list[float] = []
    stamps: list[int] = []
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(f"{inter}:{lineno}: expected {len(names)} fields, found {len(fields)}")
        users.append(fields[col["user_id"]].strip())
        items.append(fields[col["item_id"]].strip())
        ratings.append(_parse_number(inter, lineno, "rating", fields[col["rating"]], float))
        # RecBole stores timestamps as floats ("881250949" or "881250949.0").
        stamps.append(_parse_timestamp(inter, lineno, fields[col["timestamp"]]))
    if not users:
        raise DataError(f"{inter}: no interactions found")
    lines, names = _atomic_header(item_file, ("item_id", "movie_title"))
    info: dict[str, ItemInfo] = {}
    for lineno, line in lines:
        fields = line.split("\t")
        if len(fields) != len(names):
            raise DataError(
                f"{item_file}:{lineno}: expected {len(names)} fields, found {len(fields)}"
            )
        row = dict(zip(names, fields, strict=True))
        year_text = row.get("release_year", "").strip()
        year = int(year_text) if year_text.isdigit() else None
        genres = tuple(g for g in row.get("class", "").split() if g != "unknown")
        info[row["item_id"].strip()] = ItemInfo(row["movie_title"].strip(), year, genres)
    source = f"recbole:{folder}"
    return _finish(users, items, ratings, stamps, info, source, [inter, item_file])


def detect_grouplens_folder(folder: Path) -> str | None:
    """Which GroupLens release a folder holds: 'ml-100k', 'ml-1m', or None."""
    if (folder / "u.data").is_file() and (folder / "u.item").is_file():
        return "ml-100k"
    if (folder / "ratings.dat").is_file() and (folder / "movies.dat").is_file():
        return "ml-1m"
    return None
