"""Prepare a named dataset once, then reuse it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from ur4rec.data.dataset import (
    DATASET_ALIASES,
    DATASETS,
    FORMAT_VERSION,
    PRESET_DOMAINS,
    Dataset,
    canonical_dataset,
    get_spec,
    load_dataset,
    preprocess,
    save_dataset,
)
from ur4rec.data.importer import NAME
from ur4rec.data.sources import data_dir, load_raw
from ur4rec.errors import DataError, Ur4recError


def prepared_folder(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where ``name`` is prepared: under its current name, or where it was prepared under an
    earlier one (so a dataset prepared from a custom source is not silently replaced)."""
    prepared = data_dir(root) / "prepared"
    canonical = canonical_dataset(name)
    folder = prepared / canonical
    if not folder.exists():
        for old in (a for a, new in DATASET_ALIASES.items() if new == canonical):
            if (prepared / old).exists():
                return prepared / old
    return folder


def _current(folder: Path, name: str) -> tuple[Dataset | None, str | None]:
    """(the prepared copy, None) if it is readable and made with today's format and options;
    else (None, why not), or (None, None) when nothing was prepared there."""
    if not (folder / "manifest.json").exists():
        return None, None
    try:
        dataset = load_dataset(folder)
    except DataError as exc:
        return None, str(exc)
    manifest = dataset.manifest
    if manifest.get("format_version") != FORMAT_VERSION:
        return None, f"it was written in format {manifest.get('format_version')}"
    if manifest.get("options") != get_spec(name).options():
        return None, "it was made with other options"
    return dataset, None


def _recorded_source(folder: Path) -> tuple[str | None, dict[str, str]]:
    """The raw source and its file digests a prepared folder records, as ``load_raw`` takes
    it (a folder, or 'recbole'); (None, {}) if the manifest does not say."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        kind, _, where = str(manifest["source"]).partition(":")
        files = dict(manifest.get("source_files") or {})
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None, {}
    if kind == "dir" and where:
        return where, files
    if kind == "recbole":
        return "recbole", files
    return None, {}


def prepare_dataset(
    name: str,
    *,
    source: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> tuple[Dataset, bool]:
    """Prepare ``name`` unless an up-to-date copy exists; returns (dataset, newly_prepared).

    A prepared copy that is damaged or out of date is rebuilt only from the source it was
    prepared from, and only if that source still holds the same files; otherwise this stops
    and says so, rather than quietly swapping in another source's data."""
    if canonical_dataset(name) not in DATASETS:
        if source is not None or force:
            raise DataError(
                f"{name} is an imported dataset: import it again with `ur4rec data import`"
            )
        return imported_dataset(name, root), False
    spec = get_spec(name)
    folder = prepared_folder(name, root)
    expected: dict[str, str] = {}
    if not force and source is None:
        dataset, problem = _current(folder, name)
        if dataset is not None:
            return dataset, False
        if problem is not None:
            source, expected = _recorded_source(folder)
            if source is None:
                raise DataError(
                    f"the prepared {name} at {folder} cannot be used ({problem}) and does not "
                    f"say where it came from; run `ur4rec data prepare {name} --source ...` "
                    "(or --force to take the default sources)"
                )
            print(f"ur4rec: note: rebuilding {name} from {source} ({problem})", file=sys.stderr)
    try:
        raw = load_raw(spec.release, source=source, root=data_dir(root))
    except DataError as exc:
        if not expected:
            raise
        raise DataError(
            f"the prepared {name} at {folder} must be rebuilt, but its source {source} is "
            f"gone or unreadable ({exc}); prepare it again with --source or --force"
        ) from None
    if expected and raw.files != expected:
        raise DataError(
            f"the prepared {name} at {folder} must be rebuilt, but the files in its source "
            f"{source} have changed since it was prepared; prepare it again with --source "
            "or --force to accept them"
        )
    dataset = preprocess(raw, spec)
    if spec.name in PRESET_DOMAINS:
        dataset.manifest["domain"] = PRESET_DOMAINS[spec.name]
    try:
        save_dataset(dataset, folder)
    except OSError as exc:
        raise DataError(
            f"cannot write the prepared {name} under {folder.parent}: {exc}; point --data-dir "
            "or $UR4REC_DATA at a writable folder"
        ) from None
    return dataset, True


def imported_names(root: str | os.PathLike[str] | None = None) -> list[str]:
    """Names of the datasets imported under the data folder."""
    prepared = data_dir(root) / "prepared"
    if not prepared.is_dir():
        return []
    return sorted(
        p.name
        for p in prepared.iterdir()
        if p.name not in DATASETS and p.name not in DATASET_ALIASES and not p.name.startswith(".")
        and (p / "manifest.json").is_file()
    )  # fmt: skip


def imported_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Dataset:
    """A dataset ``ur4rec data import`` wrote under ``name``."""
    folder = data_dir(root) / "prepared" / name
    if not NAME.match(name) or not (folder / "manifest.json").is_file():
        known = [*DATASETS, *imported_names(root)]
        raise Ur4recError(f"unknown dataset {name!r}; known: {', '.join(known)}")
    try:
        return load_dataset(folder)
    except DataError as exc:
        raise DataError(f"{exc} (import it again with `ur4rec data import`)") from None


def save_imported(dataset: Dataset, root: str | os.PathLike[str] | None = None) -> Path:
    """Write an imported dataset under its name (atomically); returns the folder."""
    folder = data_dir(root) / "prepared" / dataset.name
    try:
        save_dataset(dataset, folder)
    except OSError as exc:
        raise DataError(
            f"cannot write the imported {dataset.name} under {folder.parent}: {exc}; point "
            "--data-dir or $UR4REC_DATA at a writable folder"
        ) from None
    return folder


def open_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Dataset:
    """The prepared dataset ``name``, preparing it from the default sources if needed."""
    return prepare_dataset(name, root=root)[0]
