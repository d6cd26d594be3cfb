"""Checkpoints: plain state dicts written atomically, read back with weights_only=True.

Each checkpoint ``NAME.pt`` has a digest file ``NAME.pt.sha256`` beside it, written first, so
a flipped byte is found on load instead of silently changing a model. The digest file holds
the new digest and the one before it: a kill between the two renames leaves the previous
checkpoint in place, which is still a genuine one.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path
from typing import Any

import torch

from ur4rec.errors import Ur4recError
from ur4rec.io import atomic_write_bytes, atomic_write_text


class CheckpointError(Ur4recError):
    """A checkpoint is missing or cannot be read."""


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _recorded(path: Path) -> list[str]:
    try:
        return digest_path(path).read_text(encoding="utf-8").split()
    except OSError:
        return []


def _record(path: Path, digest: str) -> None:
    previous = [d for d in _recorded(path)[:1] if d != digest]
    atomic_write_text(digest_path(path), "\n".join([digest, *previous]) + "\n")


def save_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    _record(path, hashlib.sha256(data).hexdigest())
    atomic_write_bytes(path, data)


def copy_checkpoint(source: Path, target: Path) -> None:
    """Copy a (verified) checkpoint and record its digest for the copy."""
    data = _verified_bytes(source)
    _record(target, hashlib.sha256(data).hexdigest())
    atomic_write_bytes(target, data)


def _verified_bytes(path: Path) -> bytes:
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"checkpoint {path} cannot be read: {exc}") from None
    recorded = _recorded(path)
    if not recorded:
        if digest_path(path).exists():
            raise CheckpointError(f"checkpoint digest {digest_path(path)} is empty or unreadable")
        return data  # written before digests were recorded
    actual = hashlib.sha256(data).hexdigest()
    if actual not in recorded:
        raise CheckpointError(
            f"checkpoint {path} is corrupt: its SHA-256 {actual[:16]}... does not match the "
            f"one recorded when it was written ({recorded[0][:16]}...)"
        )
    return data


def load_checkpoint(path: Path, key: str = "model") -> dict[str, Any]:
    """The payload of a checkpoint (verified against its digest), which must hold ``key``."""
    data = _verified_bytes(path)
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a ur4rec checkpoint: {exc}"
        ) from exc
    if not isinstance(payload, dict) or key not in payload:
        raise CheckpointError(f"checkpoint {path} has no {key} state")
    return payload
