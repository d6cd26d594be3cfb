"""Sentence vectors on disk: append-only, memory-mapped shards keyed by text hash.

A store folder holds shards ``NNNNNN-TAG.npy`` (float32 [n, dim]) and ``NNNNNN-TAG.keys`` (the n
texts' SHA-256 digests, 32 bytes each; TAG is random, so processes encoding into one store at
once never overwrite each other's shards). The vectors are written first and the keys last, both
atomically, so a shard counts once its keys exist and a killed encoding keeps every shard it
finished. Opening a store reads the keys only; vectors are memory-mapped, so a catalogue of
10^6 texts (1.5 GB of vectors) costs its keys in memory, not its vectors.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ur4rec.io import atomic_write_bytes

DIGEST = 32  # bytes of a SHA-256 digest


def digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()


class VectorStore:
    """Vectors by text digest, in shards under ``folder`` (or in memory when it is None)."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        self._shards: list[np.ndarray] = []
        self._starts: list[int] = []  # global row of each shard's first vector
        self._rows: dict[bytes, int] = {}
        self.dim = 0
        if self.folder is not None:
            self._migrate_single_file()
            self._open()

    def __len__(self) -> int:
        return len(self._rows)

    def _open(self) -> None:
        assert self.folder is not None
        if not self.folder.is_dir():
            return
        for keys_path in sorted(self.folder.glob("[0-9]" * 6 + "-*.keys")):
            vectors_path = keys_path.with_suffix(".npy")
            try:
                keys = keys_path.read_bytes()
                vectors = np.load(vectors_path, mmap_mode="r", allow_pickle=False)
            except (OSError, ValueError):
                continue  # a damaged shard is encoded again, not trusted
            n = len(keys) // DIGEST
            if len(keys) % DIGEST or vectors.ndim != 2 or len(vectors) != n:
                continue
            if vectors.dtype != np.float32 or (self.dim and vectors.shape[1] != self.dim):
                continue
            self._append(keys, vectors)

    def _append(self, keys: bytes, vectors: np.ndarray) -> None:
        start = self._starts[-1] + len(self._shards[-1]) if self._shards else 0
        self._shards.append(vectors)
        self._starts.append(start)
        self.dim = int(vectors.shape[1])
        for offset in range(len(vectors)):
            self._rows.setdefault(keys[offset * DIGEST : (offset + 1) * DIGEST], start + offset)

    def _migrate_single_file(self) -> None:
        """A cache in the one-file layout (vectors.npy + index.json by hex hash) becomes shard 0."""
        assert self.folder is not None
        index_path, vectors_path = self.folder / "index.json", self.folder / "vectors.npy"
        if not index_path.is_file() or any(self.folder.glob("*.keys")):
            return
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            vectors = np.load(vectors_path, allow_pickle=False)
            order = sorted(index, key=index.__getitem__)
            if [index[h] for h in order] != list(range(len(vectors))):
                raise ValueError("index does not cover the vectors")
            keys = b"".join(bytes.fromhex(h) for h in order)
        except (OSError, ValueError):
            return  # rebuilt by encoding, as a damaged cache always was
        self._write_shard(0, keys, vectors.astype(np.float32))
        index_path.unlink(missing_ok=True)
        vectors_path.unlink(missing_ok=True)

    def _write_shard(self, number: int, keys: bytes, vectors: np.ndarray) -> np.ndarray:
        assert self.folder is not None
        name = f"{number:06d}-{secrets.token_hex(4)}"
        atomic_write_bytes(self.folder / f"{name}.npy", _npy_bytes(vectors))
        atomic_write_bytes(self.folder / f"{name}.keys", keys)  # commits the shard
        return np.load(self.folder / f"{name}.npy", mmap_mode="r", allow_pickle=False)

    def missing(self, digests: Iterable[bytes]) -> list[int]:
        """Positions in ``digests`` whose vector is not stored (first occurrence only)."""
        seen: set[bytes] = set()
        out = []
        for i, key in enumerate(digests):
            if key not in self._rows and key not in seen:
                seen.add(key)
                out.append(i)
        return out

    def add(self, digests: list[bytes], vectors: np.ndarray) -> None:
        """Store one shard of vectors (one per digest)."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(digests) != len(vectors) or not len(digests):
            raise ValueError("one vector per digest, at least one")
        if self.dim and vectors.shape[1] != self.dim:
            raise ValueError(f"vectors of dim {vectors.shape[1]}; the store holds dim {self.dim}")
        keys = b"".join(digests)
        if self.folder is not None:
            vectors = self._write_shard(len(self._shards), keys, vectors)
        self._append(keys, vectors)

    def rows(self, digests: Iterable[bytes]) -> np.ndarray:
        """Global rows of ``digests`` (KeyError when one is not stored)."""
        return np.fromiter((self._rows[d] for d in digests), dtype=np.int64)

    def gather(
        self, rows: np.ndarray, out: str | Path | None = None, block: int = 65_536
    ) -> np.ndarray:
        """The vectors at global ``rows`` in that order: in memory, or, with ``out``, written
        block by block to an .npy file (atomically) and returned memory-mapped copy-on-write,
        so memory stays at one block however many rows there are."""
        rows = np.asarray(rows, dtype=np.int64)
        if out is None:
            result = np.empty((len(rows), self.dim), np.float32)
            self._fill(result, rows, block)
            return result
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:  # plain writes: no dirty mapped pages pile up
                header = {"descr": "<f4", "fortran_order": False, "shape": (len(rows), self.dim)}
                np.lib.format.write_array_header_1_0(f, header)
                self._fill(f, rows, block)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, out)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return np.load(out, mmap_mode="c", allow_pickle=False)

    def _fill(self, target: np.ndarray | BinaryIO, rows: np.ndarray, block: int) -> None:
        """The vectors at ``rows``, a block at a time, into an array or a file."""
        starts = np.asarray(self._starts, dtype=np.int64)
        for first in range(0, len(rows), block):
            part = rows[first : first + block]
            shard = np.searchsorted(starts, part, side="right") - 1
            chunk = np.empty((len(part), self.dim), np.float32)
            for s in np.unique(shard):
                mask = shard == s
                chunk[mask] = self._shards[s][part[mask] - starts[s]]
            if isinstance(target, np.ndarray):
                target[first : first + len(part)] = chunk
            else:
                target.write(chunk.tobytes())


def _npy_bytes(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()
