"""The MovieLens-20M and Amazon Reviews 2023 presets: their download commands against a
loopback server, pinned digests, and their formats, from small files the tests write."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import zipfile
from collections.abc import Iterator

import pytest

from tests.test_download import Server
from ur4rec.cli import main
from ur4rec.data.prepare import open_dataset
from ur4rec.data.sources import RELEASES, Release, RemoteFile
from ur4rec.text.corpus import template_texts


@pytest.fixture
def loopback() -> Iterator[Server]:
    s = Server()
    yield s
    s.httpd.shutdown()


RATINGS = "userId,movieId,rating,timestamp\n" + "".join(
    f"{u},{i},{4.5 if (u + i) % 3 else 3.0},{1000 + 10 * i + u}\n"
    for u in range(1, 9)
    for i in (1, 2, 3, 4, 5, 6, 7)
)
MOVIES = (
    "movieId,title,genres\n1,Toy Story (1995),Adventure|Animation|Children\n"
    '2,"American President, The (1995)",Comedy|Drama|Romance\n3,Heat (1995),Action|Crime\n'
    "4,Untitled,(no genres listed)\n5,Alien (1979),Horror|Sci-Fi\n6,Fargo (1996),Crime\n"
    "7,Casablanca (1942),Drama|Romance\n"
)


def ml20m_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ml-20m/ratings.csv", RATINGS)
        zf.writestr("ml-20m/movies.csv", MOVIES)
    return buffer.getvalue()


def pin(monkeypatch: pytest.MonkeyPatch, release: str, bodies: dict[str, bytes]) -> None:
    """Pin the release to these test files (the real digests stay in the other tests)."""
    files = tuple(
        RemoteFile(f.name, f.url, hashlib.sha256(bodies[f.name]).hexdigest(), len(bodies[f.name]))
        for f in RELEASES[release].files
    )
    monkeypatch.setitem(RELEASES, release, Release(release, files))


def test_ml20m_downloads_verifies_and_prepares(loopback, tmp_path, monkeypatch, capsys) -> None:
    body = ml20m_zip()
    loopback.routes["/ml-20m.zip"] = (body, None)
    monkeypatch.setenv("UR4REC_MIRROR", loopback.url)
    root = tmp_path / "data"
    # The pinned digest refuses a file that is not the release.
    assert main(["data", "prepare", "ml-20m", "--data-dir", str(root)]) == 1
    assert "96f243c338a8" in capsys.readouterr().err and not (root / "prepared").exists()
    pin(monkeypatch, "ml-20m", {"ml-20m.zip": body})
    assert main(["data", "prepare", "ml-20m", "--data-dir", str(root), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    # Ratings >= 4 only (2 of 3 here), users with at least 5 of them.
    assert manifest["options"]["min_rating"] == 4.0
    ds = open_dataset("ml-20m", root)
    assert all(r >= 4 for r in ds.rating) and ds.lengths.min() >= 5
    info = ds.item_info[ds.item_index("2")]
    assert (info.title, info.year, info.genres) == (
        "American President, The",
        1995,
        ("Comedy", "Drama", "Romance"),
    )
    assert ds.item_info[ds.item_index("4")].genres == ()
    assert template_texts(ds, "items")["1"].endswith("film from 1995. A 1990s film.")


def jsonl_gz(rows: list[dict]) -> bytes:
    return gzip.compress("".join(json.dumps(r) + "\n" for r in rows).encode())


def amazon_files() -> dict[str, bytes]:
    reviews = [
        {"rating": 5.0, "title": "great", "text": "x", "asin": f"A{i}", "parent_asin": f"P{i}",
         "user_id": f"U{u}", "timestamp": 1600000000000 + 1000 * (7 * u + i),
         "helpful_vote": 0, "verified_purchase": True}
        for u in range(6) for i in range(6)
    ] + [{"rating": 4.0, "title": "", "text": "", "asin": "Z", "parent_asin": "PZ",
          "user_id": "U0", "timestamp": 1700000000000, "helpful_vote": 1,
          "verified_purchase": False}]  # fmt: skip
    meta = [
        {"main_category": "All Beauty", "title": f"Serum {i}", "average_rating": 4.1,
         "rating_number": 10, "features": ["Vitamin C", "30 ml"],
         "description": [f"A light serum, number {i}."], "price": None, "images": [],
         "videos": [], "store": "Brand", "categories": ["Skin Care", "Face"] if i % 2 else [],
         "details": {"Size": "30 ml"}, "parent_asin": f"P{i}", "bought_together": None}
        for i in range(6)
    ]  # fmt: skip
    return {"All_Beauty.jsonl.gz": jsonl_gz(reviews), "meta_All_Beauty.jsonl.gz": jsonl_gz(meta)}


def test_amazon_beauty_downloads_verifies_and_prepares(
    loopback, tmp_path, monkeypatch, capsys
) -> None:
    bodies = amazon_files()
    for name, body in bodies.items():
        loopback.routes[f"/{name}"] = (body, None)
    monkeypatch.setenv("UR4REC_MIRROR", loopback.url)
    root = tmp_path / "data"
    assert main(["data", "prepare", "amazon-beauty", "--data-dir", str(root)]) == 1
    assert "ee00e6683556" in capsys.readouterr().err and not (root / "raw").exists()
    pin(monkeypatch, "amazon-2023-all-beauty", bodies)
    assert main(["data", "prepare", "amazon-beauty", "--data-dir", str(root), "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["domain"] == "products"
    # 5-core: the one review of PZ goes, every other user and item stays.
    assert manifest["counts"] == {**manifest["counts"], "users": 6, "items": 6, "interactions": 36}
    ds = open_dataset("amazon-beauty", root)
    info = ds.item_info[ds.item_index("P1")]
    assert info.title == "Serum 1" and info.categories == ("Skin Care", "Face")
    assert info.description == "A light serum, number 1. Vitamin C 30 ml"
    texts = template_texts(ds, "items")
    assert (
        texts["P1"] == "Serum 1: in skin care and face. A light serum, number 1. Vitamin C 30 ml."
    )
    users = template_texts(ds, "users")
    assert users["U0"].startswith("Chose 4 products")  # training part: 6 less 2 held out
    assert not any("film" in t or "movie" in t for t in [*texts.values(), *users.values()])
