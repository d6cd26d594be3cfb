import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_ml100k
from ur4rec.data.dataset import Dataset, DatasetSpec, load_dataset, preprocess, save_dataset
from ur4rec.data.prepare import prepare_dataset, prepared_folder
from ur4rec.data.raw import read_ml100k
from ur4rec.errors import DataError


def raw_sequence(dataset: Dataset, raw_user: str) -> list[str]:
    return [dataset.item_ids[i] for i in dataset.sequence(dataset.user_index(raw_user))]


def test_chronological_with_file_order_tie_break(tiny: Dataset) -> None:
    # Items 12 and 13 share timestamp 300; 12 comes first in the file.
    assert raw_sequence(tiny, "1") == ["10", "11", "12", "13", "14"]
    assert raw_sequence(tiny, "2") == ["10", "11", "12", "15"]
    assert np.all(np.diff(tiny.timestamp[tiny.offsets[0] : tiny.offsets[1]]) >= 0)


def test_dense_ids_in_numeric_order(tiny: Dataset) -> None:
    assert tiny.user_ids == ["1", "2", "3", "4"]
    assert tiny.item_ids == ["10", "11", "12", "13", "14", "15"]  # 16 never rated
    assert tiny.item_info[1].title == "Usual Suspects, The"


def test_rating_threshold_and_min_user(tiny_folder: Path) -> None:
    spec = DatasetSpec("t", "ml-100k", min_rating=4.0, min_user_interactions=3)
    data = preprocess(read_ml100k(tiny_folder), spec)
    assert data.user_ids == ["1", "2", "3"]  # user 4 has only 2 ratings >= 4
    assert raw_sequence(data, "1") == ["10", "11", "13", "14"]
    assert raw_sequence(data, "3") == ["10", "14", "15"]


def test_keep_catalog_items(tiny_folder: Path) -> None:
    spec = DatasetSpec("t", "ml-100k", keep_catalog_items=True)
    data = preprocess(read_ml100k(tiny_folder), spec)
    assert data.item_ids[-1] == "16" and data.n_items == 7


def test_k_core_repeats_until_stable(tmp_path: Path) -> None:
    # Dropping user 3 (one item left after item 13 goes) leaves item 12 with one rating:
    # a single pass keeps it, the k-core removes it.
    ratings = [(1, 10, 5, 1), (1, 11, 5, 2), (1, 12, 5, 3), (2, 10, 5, 1), (2, 11, 5, 2),
               (3, 12, 5, 1), (3, 13, 5, 2)]  # fmt: skip
    raw = read_ml100k(write_ml100k(tmp_path / "k", ratings=ratings))
    spec = DatasetSpec("t", "ml-100k", min_user_interactions=2, min_item_interactions=2)
    once = preprocess(raw, spec)
    core = preprocess(raw, replace(spec, k_core=True))
    assert once.n_interactions == 5 and "12" in once.item_ids
    assert core.n_interactions == 4 and core.item_ids == ["10", "11"]
    assert core.user_ids == ["1", "2"]


def test_filter_leaving_nothing_is_an_error(tiny_folder: Path) -> None:
    with pytest.raises(DataError, match="no interactions left"):
        preprocess(read_ml100k(tiny_folder), DatasetSpec("t", "ml-100k", min_user_interactions=99))


def test_rated_item_without_metadata(tiny_folder: Path) -> None:
    with open(tiny_folder / "u.data", "a") as f:
        f.write("1\t99\t5\t1000\n")
    with pytest.raises(DataError, match=r"have no metadata, e.g. \['99'\]"):
        preprocess(read_ml100k(tiny_folder), DatasetSpec("t", "ml-100k"))


def test_save_load_round_trip_and_hash_check(tiny: Dataset, tmp_path: Path) -> None:
    folder = tmp_path / "prepared"
    save_dataset(tiny, folder)
    again = load_dataset(folder)
    assert again.content_hash == tiny.content_hash
    assert np.array_equal(again.item, tiny.item) and again.item_info == tiny.item_info
    vocab = json.loads((folder / "vocab.json").read_text())
    vocab["items"][0] = "999"
    (folder / "vocab.json").write_text(json.dumps(vocab))
    with pytest.raises(DataError, match="content hash does not match"):
        load_dataset(folder)


def test_corrupt_arrays_are_reported(tiny: Dataset, tmp_path: Path) -> None:
    save_dataset(tiny, tmp_path / "p")
    (tmp_path / "p" / "interactions.npz").write_bytes(b"garbage")
    with pytest.raises(DataError, match="prepared dataset is unreadable"):
        load_dataset(tmp_path / "p")


def test_prepare_reuses_and_failed_prepare_keeps_old(tiny_folder: Path, tmp_path: Path) -> None:
    # ml-100k prepared from a local folder, then reused from the prepared copy.
    first, fresh = prepare_dataset("ml-100k", source=tiny_folder)
    assert fresh and first.n_interactions == 16
    second, fresh = prepare_dataset("ml-100k")
    assert not fresh and second.content_hash == first.content_hash
    # A forced re-prepare from a broken folder fails and leaves the prepared copy intact.
    (tiny_folder / "u.data").write_text("1\t10\tbad\t1\n")
    with pytest.raises(DataError):
        prepare_dataset("ml-100k", source=tiny_folder, force=True)
    assert load_dataset(prepared_folder("ml-100k")).content_hash == first.content_hash
    leftovers = [p.name for p in prepared_folder("ml-100k").parent.iterdir()]
    assert leftovers == ["ml-100k"]


def test_earlier_dataset_names_still_work(cyclic_folder, tmp_path) -> None:
    from ur4rec.data.prepare import open_dataset, prepare_dataset, prepared_folder

    dataset, _ = prepare_dataset("ml-100k-seed", source=cyclic_folder)  # the earlier name
    assert dataset.name == "ml-100k-liked"
    assert prepared_folder("ml-100k-seed") == prepared_folder("ml-100k-liked")
    same = open_dataset("ml-100k-liked")
    assert same.content_hash == dataset.content_hash
    # A copy prepared under the earlier name (e.g. from a custom source) is found there, not
    # silently replaced by a fresh one from the default sources.
    folder = prepared_folder("ml-100k-liked")
    folder.rename(folder.with_name("ml-100k-seed"))
    assert prepared_folder("ml-100k-liked") == folder.with_name("ml-100k-seed")
    again = open_dataset("ml-100k-liked")
    assert again.name == "ml-100k-liked" and again.content_hash == dataset.content_hash
