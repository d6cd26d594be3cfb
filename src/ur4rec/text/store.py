"""Text files: a JSON object {raw_id: text}, with ``<name>.manifest.json`` beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ur4rec.errors import DataError
from ur4rec.io import atomic_write_json


def manifest_path(path: Path) -> Path:
    return path.with_name(path.stem + ".manifest.json")


def write_texts(path: Path, texts: dict[str, str], manifest: dict[str, Any]) -> None:
    """Texts first, then the manifest; each file is replaced atomically."""
    atomic_write_json(path, texts)
    atomic_write_json(manifest_path(path), {**manifest, "count": len(texts)})


def read_texts(path: str | Path) -> dict[str, str]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"text file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object mapping raw ids to texts")
    bad = [k for k, v in data.items() if not isinstance(v, str)]
    if bad:
        raise DataError(f"{path}: the value for id {bad[0]!r} is not a string")
    return {str(k): v for k, v in data.items()}


def read_manifest(path: str | Path) -> dict[str, Any]:
    mpath = manifest_path(Path(path))
    if not mpath.is_file():
        return {}
    return json.loads(mpath.read_text(encoding="utf-8"))


def default_text_path(root: Path, dataset: str, kind: str, backend: str) -> Path:
    return Path(root) / "texts" / dataset / f"{kind}-{backend}.json"
