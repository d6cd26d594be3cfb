"""Where raw MovieLens files come from: a local folder, the cache, the RecBole wheel, a download.

Order, unless one is named: ``--source DIR``, the cache, RecBole's bundled copy (ml-100k only),
then a download verified against a pinned SHA-256 digest and extracted atomically.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import platformdirs

from ur4rec.data.raw import (
    RawData,
    detect_grouplens_folder,
    read_ml1m,
    read_ml100k,
    read_recbole_atomic,
)
from ur4rec.errors import ChecksumError, DataError, Ur4recError
from ur4rec.io import atomic_directory


@dataclass(frozen=True)
class Release:
    """A GroupLens release and its pinned archive."""

    name: str
    url: str
    sha256: str
    size: int


# Digests as published in TensorFlow Datasets' url_checksums/movielens.txt.
RELEASES: dict[str, Release] = {
    "ml-100k": Release(
        "ml-100k",
        "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
        "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229",
        4924029,
    ),
    "ml-1m": Release(
        "ml-1m",
        "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
        "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20",
        5917549,
    ),
}

SOURCE_KEYWORDS = ("cache", "recbole", "download")


def data_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The data folder: ``override``, else $UR4REC_DATA, else the user's cache dir."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get("UR4REC_DATA")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_cache_dir("ur4rec"))


def recbole_folder(release: str = "ml-100k") -> Path | None:
    """The ml-100k copy inside the RecBole 1.2.1 wheel, found without importing recbole."""
    try:
        spec = importlib.util.find_spec("recbole")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        folder = Path(location) / "dataset_example" / release
        if (folder / f"{release}.inter").is_file():
            return folder
    return None


def _read_folder(folder: Path, release: str) -> RawData:
    found = detect_grouplens_folder(folder)
    if found is None:
        nested = folder / release
        if nested.is_dir() and detect_grouplens_folder(nested):
            return _read_folder(nested, release)
        raise DataError(
            f"{folder}: no GroupLens files found (expected u.data + u.item for ml-100k, "
            f"or ratings.dat + movies.dat for ml-1m)"
        )
    if found != release:
        raise DataError(f"{folder}: holds {found} files, but {release} was asked for")
    return read_ml100k(folder) if found == "ml-100k" else read_ml1m(folder)


def _cache_folder(root: Path, release: str) -> Path:
    return root / "raw" / release


def download_release(
    release: str,
    root: Path,
    *,
    url: str | None = None,
    sha256: str | None = None,
    timeout: float = 60.0,
) -> Path:
    """Download a release zip, check its digest, extract it atomically into the cache.

    ``url`` defaults to $UR4REC_MIRROR/<release>.zip if set, else GroupLens; ``sha256`` to
    the pinned digest. Nothing is left behind on failure.
    """
    if release not in RELEASES:
        raise Ur4recError(f"no download known for {release!r}; known: {sorted(RELEASES)}")
    pinned = RELEASES[release]
    mirror = os.environ.get("UR4REC_MIRROR")
    url = url or (f"{mirror.rstrip('/')}/{release}.zip" if mirror else pinned.url)
    expected = (sha256 or pinned.sha256).lower()
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=downloads, prefix=f".{release}.", suffix=".zip.part")
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as f, urllib.request.urlopen(url, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                received = 0
                while chunk := response.read(1 << 16):
                    f.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                if length is not None and received != int(length):
                    raise DataError(
                        f"download of {url} was cut short: {received} of {length} bytes"
                    )
        except (urllib.error.URLError, OSError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"download of {url} failed: {exc}") from exc
        actual = digest.hexdigest()
        if actual != expected:
            raise ChecksumError(
                f"download of {url} has SHA-256 {actual}, expected {expected}: "
                "the file is corrupt or not the pinned release; nothing was kept"
            )
        target = _cache_folder(root, release)
        with atomic_directory(target) as staging:
            _safe_extract(tmp, staging)
        return target
    finally:
        tmp.unlink(missing_ok=True)


def _safe_extract(archive: Path, dest: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            for member in zf.namelist():
                resolved = (dest / member).resolve()
                if not resolved.is_relative_to(dest.resolve()):
                    raise DataError(f"{archive}: refusing to extract {member!r} outside the folder")
            zf.extractall(dest)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{archive}: not a valid zip archive ({exc})") from exc


def _grouplens_in(folder: Path, release: str) -> Path | None:
    """The folder holding the release's files within an extracted tree, if any."""
    for candidate in (folder, folder / release):
        if detect_grouplens_folder(candidate) == release:
            return candidate
    return None


def load_raw(
    release: str,
    *,
    source: str | os.PathLike[str] | None = None,
    root: Path | None = None,
) -> RawData:
    """Read a release's raw interactions, trying the sources in order (see module doc)."""
    if release not in RELEASES:
        raise Ur4recError(f"unknown MovieLens release {release!r}; known: {sorted(RELEASES)}")
    root = data_dir(root)
    if source is not None and str(source) not in SOURCE_KEYWORDS:
        folder = Path(source).expanduser()
        if not folder.is_dir():
            raise DataError(f"--source {folder}: no such folder")
        return _read_folder(folder, release)
    wanted = str(source) if source is not None else None
    cached = _grouplens_in(_cache_folder(root, release), release)
    if wanted in (None, "cache"):
        if cached is not None:
            return _read_folder(cached, release)
        if wanted == "cache":
            raise DataError(f"no cached copy of {release} under {_cache_folder(root, release)}")
    if wanted in (None, "recbole") and release == "ml-100k":
        folder = recbole_folder(release)
        if folder is not None:
            return read_recbole_atomic(folder, release)
        if wanted == "recbole":
            raise DataError(
                "RecBole's bundled ml-100k was not found; install it with "
                "`pip install --no-deps recbole==1.2.1`"
            )
    if wanted == "recbole":
        raise DataError(f"RecBole bundles ml-100k only, not {release}")
    extracted = download_release(release, root)
    folder = _grouplens_in(extracted, release)
    if folder is None:
        shutil.rmtree(extracted, ignore_errors=True)
        raise DataError(f"the downloaded {release} archive holds no GroupLens files")
    return _read_folder(folder, release)
