"""Prepare a named dataset once, then reuse it."""

from __future__ import annotations

import os
from pathlib import Path

from ur4rec.data.dataset import (
    FORMAT_VERSION,
    Dataset,
    get_spec,
    load_dataset,
    preprocess,
    save_dataset,
)
from ur4rec.data.sources import data_dir, load_raw
from ur4rec.errors import DataError


def prepared_folder(name: str, root: str | os.PathLike[str] | None = None) -> Path:
    return data_dir(root) / "prepared" / name


def _current(folder: Path, name: str) -> Dataset | None:
    """The prepared copy, if it is readable and made with today's format and options."""
    try:
        dataset = load_dataset(folder)
    except DataError:
        return None
    manifest = dataset.manifest
    current = (
        manifest.get("format_version") == FORMAT_VERSION
        and manifest.get("options") == get_spec(name).options()
    )
    return dataset if current else None


def prepare_dataset(
    name: str,
    *,
    source: str | os.PathLike[str] | None = None,
    root: str | os.PathLike[str] | None = None,
    force: bool = False,
) -> tuple[Dataset, bool]:
    """Prepare ``name`` unless an up-to-date copy exists; returns (dataset, newly_prepared)."""
    spec = get_spec(name)
    folder = prepared_folder(name, root)
    if not force and source is None and (dataset := _current(folder, name)) is not None:
        return dataset, False
    raw = load_raw(spec.release, source=source, root=data_dir(root))
    dataset = preprocess(raw, spec)
    save_dataset(dataset, folder)
    return dataset, True


def open_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Dataset:
    """The prepared dataset ``name``, preparing it from the default sources if needed."""
    return prepare_dataset(name, root=root)[0]
