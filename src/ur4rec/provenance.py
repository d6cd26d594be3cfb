"""Where a result came from: the code, the config and the data it was computed with.

A result (a run folder, a ranks file, a benchmark's result file) records ``provenance(...)``:

- ``code``: the package version, the git commit and whether the work tree was dirty (for
  people), and ``source_hash``, a digest of the package's own source files (for machines);
- ``config_hash``: a digest of the resolved config (``dump_config``);
- ``data_hash``: the prepared dataset's content hash.

A stored result is reused only when ``stale_reasons`` finds nothing: the same source hash, the
same config and the same data. The source hash, not the commit, decides, so a commit that
only touches documents or benchmarks leaves earlier results current, while any change to the
package's code makes them older code.
"""

from __future__ import annotations

import functools
import hashlib
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ur4rec.version import __version__

PACKAGE = Path(__file__).resolve().parent
SOURCE_SUFFIXES = (".py", ".md")  # the code and the LLM prompt templates shipped beside it


def text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@functools.cache
def source_hash(package: Path = PACKAGE) -> str:
    """sha256 over the package's source files, by relative path and content."""
    digest = hashlib.sha256()
    for path in sorted(p for p in package.rglob("*") if p.suffix in SOURCE_SUFFIXES):
        if "__pycache__" in path.parts:
            continue
        digest.update(path.relative_to(package).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", "-C", str(PACKAGE), *args], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


@functools.cache
def code_version() -> dict[str, Any]:
    """The version, git commit (None outside a checkout), whether the package's files differ
    from that commit, and the source hash."""
    commit = _git("rev-parse", "HEAD")
    dirty = None
    if commit is not None:
        status = _git("status", "--porcelain", "--", ".")  # the package's files only
        dirty = bool(status) if status is not None else None
    return {
        "version": __version__,
        "commit": commit,
        "dirty": dirty,
        "source_hash": source_hash(),
    }


def provenance(config_text: str | None = None, data_hash: str | None = None) -> dict[str, Any]:
    """What to store next to a result: ``config_text`` is the resolved config's YAML."""
    out: dict[str, Any] = {"code": code_version()}
    if config_text is not None:
        out["config_hash"] = text_hash(config_text)
    if data_hash is not None:
        out["data_hash"] = data_hash
    return out


def stale_reasons(stored: Mapping[str, Any] | None, current: Mapping[str, Any]) -> list[str]:
    """Why a result stored with ``stored`` provenance cannot stand for ``current``; empty when
    it can. Keys missing from ``current`` are not compared; missing from ``stored``, they are
    reasons (a result that does not say where it came from is not trusted)."""
    if not stored:
        return ["it records no provenance (written by older code)"]
    reasons = []
    old_code = (stored.get("code") or {}).get("source_hash")
    if old_code != current["code"]["source_hash"]:
        commit = (stored.get("code") or {}).get("commit") or "unknown"
        reasons.append(f"it was computed by other code (commit {str(commit)[:10]})")
    for key, what in (("config_hash", "config"), ("data_hash", "data")):
        if key in current and stored.get(key) != current[key]:
            reasons.append(f"its {what} differs")
    return reasons


def describe(code: Mapping[str, Any]) -> str:
    """'commit 1a2b3c4d5e (dirty)' for a heading."""
    commit = code.get("commit")
    text = f"commit {str(commit)[:10]}" if commit else f"ur4rec {code.get('version')}"
    return text + (" (dirty)" if code.get("dirty") else "")
