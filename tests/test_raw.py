from pathlib import Path

import pytest

from tests.conftest import write_ml100k
from ur4rec.data.raw import read_ml1m, read_ml100k, read_recbole_atomic, split_title_year
from ur4rec.data.sources import load_raw, recbole_folder
from ur4rec.errors import DataError


def test_ml100k_reader_keeps_file_order_and_metadata(tiny_folder: Path) -> None:
    raw = read_ml100k(tiny_folder)
    assert len(raw) == 16
    assert raw.users[:2] == ["1", "1"] and raw.items[:2] == ["10", "11"]
    assert raw.item_info["11"].title == "Usual Suspects, The"
    assert raw.item_info["11"].year == 1995
    assert raw.item_info["11"].genres == ("Crime",)
    assert set(raw.files) == {"u.data", "u.item"}


def test_title_year_split() -> None:
    assert split_title_year("Toy Story (1995)") == ("Toy Story", 1995)
    assert split_title_year("unknown") == ("unknown", None)
    assert split_title_year("City of Lost Children, The (Cité des enfants perdus, La) (1995)") == (
        "City of Lost Children, The (Cité des enfants perdus, La)",
        1995,
    )


def test_ml1m_reader(tmp_path: Path) -> None:
    (tmp_path / "ratings.dat").write_text("1::10::5::978300760\n2::10::3::978300761\n")
    (tmp_path / "movies.dat").write_text("10::GoldenEye (1995)::Action|Adventure\n")
    raw = read_ml1m(tmp_path)
    assert raw.users == ["1", "2"]
    assert raw.item_info["10"].genres == ("Action", "Adventure")
    assert raw.ratings.tolist() == [5.0, 3.0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\t10\tfive\t100\n", "u.data:2: column 'rating' should be float, got 'five'"),
        ("1\t10\t5\n", "u.data:2: expected 4 fields"),
        ("1\t10\t5\tsoon\n", "u.data:2: column 'timestamp' should be int"),
    ],
)
def test_malformed_ratings_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    folder = write_ml100k(tmp_path / "bad")
    (folder / "u.data").write_text("1\t10\t5\t100\n" + line)
    with pytest.raises(DataError, match=message):
        read_ml100k(folder)


def test_malformed_item_file(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "bad")
    (folder / "u.item").write_text("10|Toy Story (1995)|x\n")
    with pytest.raises(DataError, match=r"u.item:1: expected 24 '\|'-separated fields"):
        read_ml100k(folder)


def test_missing_file_is_named(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "bad")
    (folder / "u.item").unlink()
    with pytest.raises(DataError, match="missing file: .*u.item"):
        read_ml100k(folder)


def test_recbole_atomic_wrong_columns(tmp_path: Path) -> None:
    (tmp_path / "x.inter").write_text("user_id:token\titem_id:token\n1\t2\n")
    (tmp_path / "x.item").write_text("item_id:token\tmovie_title:token_seq\n2\tA\n")
    with pytest.raises(
        DataError, match=r"x.inter:1: missing column\(s\) \['rating', 'timestamp'\]"
    ):
        read_recbole_atomic(tmp_path, "x")


def test_recbole_copy_matches_grouplens_layout() -> None:
    folder = recbole_folder()
    if folder is None:
        pytest.skip("recbole==1.2.1 is not installed")
    raw = read_recbole_atomic(folder)
    assert len(raw) == 100_000
    assert (raw.users[0], raw.items[0], raw.timestamps[0]) == ("196", "242", 881250949)
    assert raw.item_info["1"].title == "Toy Story"
    assert raw.item_info["1"].year == 1995


def test_source_dir_of_wrong_release(tiny_folder: Path) -> None:
    with pytest.raises(DataError, match="holds ml-100k files, but ml-1m was asked for"):
        load_raw("ml-1m", source=tiny_folder)


def test_source_dir_without_files(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no GroupLens files found"):
        load_raw("ml-100k", source=tmp_path)


def test_cache_is_preferred_over_recbole(tmp_path: Path, _isolated_data_dir: Path) -> None:
    write_ml100k(_isolated_data_dir / "raw" / "ml-100k")
    raw = load_raw("ml-100k")
    assert len(raw) == 16 and raw.source.startswith("dir:")
