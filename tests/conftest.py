from __future__ import annotations

from pathlib import Path

import pytest

from ur4rec.data.dataset import Dataset, DatasetSpec, preprocess
from ur4rec.data.raw import ML100K_GENRES, read_ml100k

# user, item, rating, timestamp: user 1 has two items at the same time (file order decides).
TINY_RATINGS = [
    (1, 10, 5, 100), (1, 11, 4, 200), (1, 12, 3, 300), (1, 13, 5, 300), (1, 14, 4, 500),
    (2, 11, 5, 150), (2, 10, 2, 120), (2, 12, 4, 400), (2, 15, 5, 900),
    (3, 10, 4, 50), (3, 13, 1, 60), (3, 14, 5, 70), (3, 15, 4, 80), (3, 11, 3, 90),
    (4, 12, 5, 10), (4, 10, 5, 20),
]  # fmt: skip
TINY_TITLES = {
    10: ("Toy Story (1995)", "Animation"),
    11: ("Usual Suspects, The (1995)", "Crime"),
    12: ("Heat (1995)", "Action"),
    13: ("Casablanca (1942)", "Romance"),
    14: ("Alien (1979)", "Sci-Fi"),
    15: ("Fargo (1996)", "Crime"),
    16: ("Never Rated (1990)", "Drama"),
}


def write_ml100k(folder: Path, ratings=TINY_RATINGS, titles=TINY_TITLES) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "u.data").write_text("".join(f"{u}\t{i}\t{r}\t{t}\n" for u, i, r, t in ratings))
    lines = []
    for item, (title, genre) in titles.items():
        flags = ["1" if g == genre else "0" for g in ML100K_GENRES]
        lines.append(f"{item}|{title}|01-Jan-1995||http://x|" + "|".join(flags))
    (folder / "u.item").write_text("\n".join(lines) + "\n", encoding="latin-1")
    return folder


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No test touches the user's cache: UR4REC_DATA points into the test's temp folder."""
    folder = tmp_path / "ur4rec-data"
    monkeypatch.setenv("UR4REC_DATA", str(folder))
    monkeypatch.delenv("UR4REC_MIRROR", raising=False)
    return folder


@pytest.fixture
def tiny_folder(tmp_path: Path) -> Path:
    return write_ml100k(tmp_path / "tiny-ml-100k")


@pytest.fixture
def tiny(tiny_folder: Path) -> Dataset:
    return preprocess(read_ml100k(tiny_folder), DatasetSpec("tiny", "ml-100k"))


def cyclic_ratings(n_users: int = 40, n_items: int = 20, length: int = 12) -> list[tuple]:
    """Users walk the items in a cycle (next item = previous + 1): learnable in seconds."""
    rows = []
    for user in range(1, n_users + 1):
        start = (user * 7) % n_items
        for step in range(length):
            item = (start + step) % n_items + 1
            rows.append((user, item, 4 + (step % 2), 1000 * user + step))
    return rows


@pytest.fixture
def cyclic_folder(tmp_path: Path) -> Path:
    titles = {i: (f"Movie {i} (19{70 + i})", "Drama") for i in range(1, 21)}
    return write_ml100k(tmp_path / "cyclic", ratings=cyclic_ratings(), titles=titles)
