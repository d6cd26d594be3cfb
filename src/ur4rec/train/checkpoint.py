"""Checkpoints: plain state dicts written atomically, read back with weights_only=True."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch

from ur4rec.errors import Ur4recError
from ur4rec.io import atomic_write_bytes


class CheckpointError(Ur4recError):
    """A checkpoint is missing or cannot be read."""


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a ur4rec checkpoint: {exc}"
        ) from exc
    if not isinstance(payload, dict) or "model" not in payload:
        raise CheckpointError(f"checkpoint {path} has no model state")
    return payload
