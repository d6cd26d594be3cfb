"""Import any interaction log with item text: CSV, TSV, Parquet or JSON Lines (gzip too).

The log needs a user, an item and a time column (a rating column is optional); an item table,
when given, adds titles, free-text fields, categories and numeric attributes. Both are read by
polars, checked, and prepared by the same code as the presets (``dataset.build_dataset``), so
an imported dataset is a prepared dataset like any other, usable by name.

Bad input is named, never guessed: a missing column lists the columns present, unparseable ids
or times give the first row numbers (1-based, header not counted) and the count, and items
without metadata are counted and titled by their id.
"""

from __future__ import annotations

import gzip
import io
import re
import sys
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from ur4rec.data.dataset import DATASET_ALIASES, DATASETS, Dataset, DatasetSpec, build_dataset
from ur4rec.data.raw import ItemInfo, sha256_file
from ur4rec.errors import DataError, Ur4recError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHOWN_ROWS = 5  # row numbers quoted in an error


@dataclass
class ImportSpec:
    """How to read one log (and its item table) into a prepared dataset."""

    name: str
    interactions: str
    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str | None = None
    min_rating: float | None = None
    min_user_interactions: int = 0
    min_item_interactions: int = 0
    k_core: bool = False
    items: str | None = None
    item_id_col: str | None = None  # default: item_col
    title_col: str | None = None
    text_cols: list[str] = field(default_factory=list)
    category_col: str | None = None
    category_sep: str = "|"
    attribute_cols: list[str] = field(default_factory=list)
    keep_catalog_items: bool = False
    domain: str = "items"  # what the items are, plural: 'products', 'books', ...

    def check(self) -> None:
        if not NAME.match(self.name):
            raise Ur4recError(
                f"dataset name {self.name!r}: use letters, digits, '.', '_' and '-' "
                "(at most 64, starting with a letter or digit)"
            )
        if self.name in DATASETS or self.name in DATASET_ALIASES:
            raise Ur4recError(f"{self.name!r} is a preset's name; import under another name")
        if self.min_rating is not None and not self.rating_col:
            raise Ur4recError("min_rating needs a rating column (--rating-col)")
        for key in ("min_user_interactions", "min_item_interactions"):
            if getattr(self, key) < 0:
                raise Ur4recError(f"{key} must be >= 0")
        if not self.items and (self.title_col or self.text_cols or self.category_col):
            raise Ur4recError("title, text and category columns need an item table (--items)")
        if not self.domain.strip():
            raise Ur4recError("domain must be a non-empty word such as 'products'")

    def options(self) -> dict[str, Any]:
        """What the manifest records (file names, not the folders they were in)."""
        out = asdict(self)
        out["interactions"] = Path(self.interactions).name
        if self.items:
            out["items"] = Path(self.items).name
        return out


def load_import_config(path: str | Path, overrides: dict[str, Any] | None = None) -> ImportSpec:
    """An :class:`ImportSpec` from a YAML file (keys as the fields, paths relative to the
    file), with ``overrides`` (set values only) on top."""
    path = Path(path)
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise Ur4recError(f"cannot read import config {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise Ur4recError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(obj, dict):
        raise Ur4recError(f"{path}: expected a mapping of import options")
    known = {f.name for f in fields(ImportSpec)}
    unknown = sorted(set(obj) - known)
    if unknown:
        raise Ur4recError(f"{path}: unknown import option(s) {unknown}; known: {sorted(known)}")
    for key in ("interactions", "items"):
        if isinstance(obj.get(key), str) and not Path(obj[key]).is_absolute():
            obj[key] = str(path.parent / obj[key])
    obj.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return spec_from_mapping(obj, str(path))


def spec_from_mapping(obj: dict[str, Any], where: str = "import options") -> ImportSpec:
    for key in ("name", "interactions"):
        if not obj.get(key):
            raise Ur4recError(f"{where}: '{key}' is required")
    for key in ("text_cols", "attribute_cols"):
        value = obj.get(key)
        if isinstance(value, str):
            obj[key] = [c.strip() for c in value.split(",") if c.strip()]
    try:
        spec = ImportSpec(**obj)
    except TypeError as exc:
        raise Ur4recError(f"{where}: {exc}") from None
    spec.check()
    return spec


# --- reading ---------------------------------------------------------------------------------


def _format(path: Path) -> tuple[str, bool]:
    name = path.name.lower()
    compressed = name.endswith(".gz")
    if compressed:
        name = name[:-3]
    for suffix, kind in (
        (".csv", "csv"), (".tsv", "tsv"), (".tab", "tsv"), (".parquet", "parquet"),
        (".pq", "parquet"), (".jsonl", "jsonl"), (".ndjson", "jsonl"), (".json", "jsonl"),
    ):  # fmt: skip
        if name.endswith(suffix):
            return kind, compressed
    raise DataError(
        f"{path}: unknown file type; use .csv, .tsv, .parquet or .jsonl (optionally .gz)"
    )


def read_table(path: str | Path, columns: list[str]) -> pl.DataFrame:
    """The named columns of a table file; text formats are read as strings (parsed later, so
    a bad value is reported by row)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"missing file: {path}")
    kind, compressed = _format(path)
    try:
        if kind == "parquet":
            present = list(pl.read_parquet_schema(path))
            _require(path, columns, present)
            return pl.read_parquet(path, columns=columns)
        if kind == "jsonl":
            data: Any = path
            if compressed:
                with gzip.open(path, "rb") as f:
                    data = io.BytesIO(f.read())
            frame = pl.read_ndjson(data, infer_schema_length=None)
            _require(path, columns, frame.columns)
            return frame.select(columns)
        sep = "," if kind == "csv" else "\t"
        header = pl.read_csv(path, separator=sep, n_rows=0, infer_schema=False)
        _require(path, columns, header.columns)
        return pl.read_csv(path, separator=sep, columns=columns, infer_schema=False, quote_char='"')
    except DataError:
        raise
    except (pl.exceptions.PolarsError, OSError, EOFError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as {kind}: {first}") from None


def _require(path: Path, wanted: list[str], present: list[str]) -> None:
    missing = [c for c in dict.fromkeys(wanted) if c not in present]
    if missing:
        raise DataError(f"{path}: no column(s) {missing}; the columns are {present}")


def _bad_rows(path: Path, column: str, bad: pl.Series, what: str) -> DataError:
    rows = (bad.arg_true() + 1).to_list()
    shown = ", ".join(str(r) for r in rows[:SHOWN_ROWS])
    more = f" and {len(rows) - SHOWN_ROWS} more" if len(rows) > SHOWN_ROWS else ""
    return DataError(f"{path}: column '{column}': {len(rows)} row(s) {what}: rows {shown}{more}")


def _ids(path: Path, column: str, values: pl.Series) -> pl.Series:
    ids = values.cast(pl.String).str.strip_chars()
    bad = ids.is_null() | (ids.str.len_bytes() == 0)
    if bool(bad.any()):
        raise _bad_rows(path, column, bad, "have an empty id")
    return ids


def _timestamps(path: Path, column: str, values: pl.Series) -> pl.Series:
    """Integer times: integers as they are (seconds, milliseconds: any unit), integral
    floats, dates and ISO date-times as epoch seconds (UTC)."""
    if values.dtype == pl.Datetime or values.dtype == pl.Date:
        out = values.cast(pl.Datetime("us")).dt.epoch("s")
    elif values.dtype.is_integer():
        out = values.cast(pl.Int64)
    else:
        text = values.cast(pl.String).str.strip_chars()
        as_int = text.cast(pl.Int64, strict=False)
        as_float = text.cast(pl.Float64, strict=False)
        integral = as_float.is_finite() & (as_float == as_float.floor()) & (as_float.abs() < 2**62)
        from_float = pl.select(
            pl.when(pl.lit(integral)).then(pl.lit(as_float).cast(pl.Int64)).otherwise(None)
        ).to_series()
        out = as_int.fill_null(from_float)
        if bool(out.is_null().any()):
            dates = text.str.to_datetime(strict=False, time_zone="UTC", time_unit="us")
            out = out.fill_null(dates.dt.epoch("s"))
    bad = out.is_null()
    if bool(bad.any()):
        raise _bad_rows(path, column, bad, "are not a time (an integer or an ISO date-time)")
    return out.alias("timestamp")


def _ratings(path: Path, column: str, values: pl.Series) -> pl.Series:
    text = values if values.dtype.is_numeric() else values.cast(pl.String).str.strip_chars()
    out = text.cast(pl.Float32, strict=False)
    bad = out.is_null() & text.is_not_null() & (text.cast(pl.String) != "")
    if bool(bad.any()):
        raise _bad_rows(path, column, bad, "are not a number")
    return out.fill_null(float("nan")).alias("rating")  # no rating: dropped and counted


def read_log(spec: ImportSpec) -> pl.DataFrame:
    path = Path(spec.interactions)
    wanted = [spec.user_col, spec.item_col, spec.time_col]
    if spec.rating_col:
        wanted.append(spec.rating_col)
    raw = read_table(path, wanted)
    rating = (
        _ratings(path, spec.rating_col, raw[spec.rating_col])
        if spec.rating_col
        else pl.Series("rating", [1.0] * raw.height, dtype=pl.Float32)
    )
    return pl.DataFrame(
        {
            "user": _ids(path, spec.user_col, raw[spec.user_col]),
            "item": _ids(path, spec.item_col, raw[spec.item_col]),
            "rating": rating,
            "timestamp": _timestamps(path, spec.time_col, raw[spec.time_col]),
        }
    )


def _text(value: Any) -> str:
    """A free-text cell as one string: lists (Amazon's description, features) joined."""
    if value is None:
        return ""
    if isinstance(value, list):
        return " ".join(_text(v) for v in value).strip()
    return " ".join(str(value).split())


def _categories(value: Any, sep: str) -> tuple[str, ...]:
    if value is None:
        return ()
    parts = value if isinstance(value, list) else str(value).split(sep)
    return tuple(dict.fromkeys(p.strip() for p in (str(x) for x in parts) if p.strip()))


def read_items(spec: ImportSpec) -> tuple[dict[str, ItemInfo], int]:
    """Item metadata by raw id, and how many repeated ids were dropped (the first is kept)."""
    if not spec.items:
        return {}, 0
    path = Path(spec.items)
    id_col = spec.item_id_col or spec.item_col
    optional = [spec.title_col, *spec.text_cols, spec.category_col, *spec.attribute_cols]
    frame = read_table(path, [id_col, *[c for c in optional if c]])
    ids = _ids(path, id_col, frame[id_col])
    attributes = {}
    for column in spec.attribute_cols:
        values = frame[column]
        numbers = values.cast(pl.Float64, strict=False)
        bad = numbers.is_null() & values.is_not_null() & (values.cast(pl.String) != "")
        if bool(bad.any()):
            raise _bad_rows(path, column, bad, "are not a number")
        attributes[column] = numbers.to_list()
    titles = frame[spec.title_col].to_list() if spec.title_col else [None] * frame.height
    texts = [frame[c].to_list() for c in spec.text_cols]
    cats = frame[spec.category_col].to_list() if spec.category_col else [None] * frame.height
    info: dict[str, ItemInfo] = {}
    repeated = 0
    for row, raw_id in enumerate(ids.to_list()):
        if raw_id in info:
            repeated += 1
            continue
        title = _text(titles[row]) or raw_id
        description = " ".join(t for t in (_text(col[row]) for col in texts) if t)
        attrs = tuple(
            (name, float(v[row]))
            for name, v in attributes.items()
            if v[row] is not None and v[row] == v[row]
        )
        info[raw_id] = ItemInfo(
            title, None, _categories(cats[row], spec.category_sep), description, attrs
        )
    return info, repeated


def import_dataset(spec: ImportSpec) -> Dataset:
    """The prepared dataset ``spec`` describes (not yet written; see ``save_dataset``)."""
    spec.check()
    log = read_log(spec)
    info, repeated = read_items(spec)
    preset = DatasetSpec(
        spec.name,
        "import",
        min_rating=spec.min_rating,
        min_user_interactions=spec.min_user_interactions,
        min_item_interactions=spec.min_item_interactions,
        k_core=spec.k_core,
        keep_catalog_items=spec.keep_catalog_items and bool(info),
    )
    files = {Path(spec.interactions).name: sha256_file(Path(spec.interactions))}
    if spec.items:
        files[Path(spec.items).name] = sha256_file(Path(spec.items))
    dataset = build_dataset(
        log,
        info,
        preset,
        source=f"import:{Path(spec.interactions).resolve()}",
        files=files,
        fill_missing_info=True,
        manifest={"import": spec.options(), "domain": spec.domain, "rows_read": log.height},
    )
    dataset.manifest["dropped"]["repeated_item_rows"] = repeated
    missing = dataset.manifest["filled"]["items_without_metadata"]
    if missing:
        had = "the item table" if spec.items else "no item table"
        print(
            f"ur4rec: warning: {missing} item(s) of the log have no metadata ({had}); "
            "each is titled by its id",
            file=sys.stderr,
        )
    return dataset
