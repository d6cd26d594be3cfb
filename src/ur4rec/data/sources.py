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

from ur4rec.data.public import holds, read_public
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
class RemoteFile:
    """One pinned file of a release: a zip archive (extracted) or a file kept as it is."""

    name: str
    url: str
    sha256: str
    size: int


@dataclass(frozen=True)
class Release:
    """A public release and its pinned files."""

    name: str
    files: tuple[RemoteFile, ...]

    @property
    def url(self) -> str:
        return self.files[0].url

    @property
    def sha256(self) -> str:
        return self.files[0].sha256


def _zip(name: str, sha256: str, size: int) -> Release:
    url = f"https://files.grouplens.org/datasets/movielens/{name}.zip"
    return Release(name, (RemoteFile(f"{name}.zip", url, sha256, size),))


AMAZON_2023 = "https://mcauleylab.ucsd.edu/public_datasets/data/amazon_2023/raw"
# MovieLens digests as published in TensorFlow Datasets' url_checksums/movielens.txt. The Amazon
# Reviews 2023 digests are as one public project recorded them on download (2026-07-15); the
# publisher lists none, so a changed upload is refused rather than silently used.
RELEASES: dict[str, Release] = {
    "ml-100k": _zip(
        "ml-100k", "50d2a982c66986937beb9ffb3aa76efe955bf3d5c6b761f4e3a7cd717c6a3229", 4924029
    ),
    "ml-1m": _zip(
        "ml-1m", "a6898adb50b9ca05aa231689da44c217cb524e7ebd39d264c56e2832f2c54e20", 5917549
    ),
    "ml-20m": _zip(
        "ml-20m", "96f243c338a8665f6bcc89c53edf6ee39162a846940de6b7c8c48aeada765ff3", 198702078
    ),
    "amazon-2023-all-beauty": Release(
        "amazon-2023-all-beauty",
        (
            RemoteFile(
                "All_Beauty.jsonl.gz",
                f"{AMAZON_2023}/review_categories/All_Beauty.jsonl.gz",
                "ee00e66835567c3f12fde6a482f8d7055c22cac2d0924f677263affdd8a0e349",
                0,  # size not recorded with the digest
            ),
            RemoteFile(
                "meta_All_Beauty.jsonl.gz",
                f"{AMAZON_2023}/meta_categories/meta_All_Beauty.jsonl.gz",
                "51f8255c2794afd60e274c10d3e2d09dc1f671eba4ba35f74f748d8631216d05",
                0,
            ),
        ),
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
    if release not in ("ml-100k", "ml-1m"):
        if not holds(folder, release) and holds(folder / release, release):
            folder = folder / release
        return read_public(folder, release)
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
    """Download a release's files, check each digest, and put them (zips extracted) into the
    cache atomically: all of them or none.

    A file's URL defaults to $UR4REC_MIRROR/<file name> if set, else the publisher's; ``url``
    and ``sha256`` replace the first file's. Nothing is left behind on failure.
    """
    if release not in RELEASES:
        raise Ur4recError(f"no download known for {release!r}; known: {sorted(RELEASES)}")
    mirror = os.environ.get("UR4REC_MIRROR")
    downloads = root / "downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    fetched: list[tuple[RemoteFile, Path]] = []
    try:
        for n, remote in enumerate(RELEASES[release].files):
            where = f"{mirror.rstrip('/')}/{remote.name}" if mirror else remote.url
            expected = remote.sha256
            if n == 0:
                where, expected = url or where, sha256 or expected
            fetched.append(
                (remote, _fetch(where, expected.lower(), downloads, remote.name, timeout))
            )
        target = _cache_folder(root, release)
        with atomic_directory(target) as staging:
            for remote, tmp in fetched:
                if remote.name.endswith(".zip"):
                    _safe_extract(tmp, staging)
                else:
                    os.replace(tmp, staging / remote.name)
        return target
    finally:
        for _, tmp in fetched:
            tmp.unlink(missing_ok=True)


def _fetch(url: str, expected: str, downloads: Path, name: str, timeout: float) -> Path:
    """``url`` into a temp file under ``downloads`` whose SHA-256 is ``expected``."""
    fd, tmp_name = tempfile.mkstemp(dir=downloads, prefix=f".{name}.", suffix=".part")
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
        return tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


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
        if release not in ("ml-100k", "ml-1m"):
            if holds(candidate, release):
                return candidate
        elif detect_grouplens_folder(candidate) == release:
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
        raise Ur4recError(f"unknown release {release!r}; known: {sorted(RELEASES)}")
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
        raise DataError(f"the downloaded {release} files are not the release's")
    return _read_folder(folder, release)
