from pathlib import Path

import pytest

from ur4rec.cli import main
from ur4rec.data.dataset import Dataset
from ur4rec.data.raw import ItemInfo
from ur4rec.data.sources import recbole_folder
from ur4rec.data.splits import make_split, targets
from ur4rec.text.audit import audit_texts, mentions, title_forms
from ur4rec.text.corpus import template_texts
from ur4rec.text.store import write_texts

SHARED = Path(__file__).resolve().parents[2] / "shared" / "seed-llm-texts"


def test_title_matching_is_robust() -> None:
    suspects = ItemInfo("Usual Suspects, The", 1995, ())
    assert mentions("Fans of *The Usual Suspects* (1995).", suspects)
    assert mentions("usual suspects, the", suspects)
    assert mentions("THE USUAL-SUSPECTS!", suspects)
    assert not mentions("usual suspicion", suspects)
    alien = ItemInfo("Alien", 1979, ())
    assert not mentions("Loves Aliens (1986)", alien)  # whole words only
    assert mentions(
        "Cité des Enfants Perdus",
        ItemInfo("City of Lost Children, The (Cité des enfants perdus, La)", 1995, ()),
    )
    assert " the " not in title_forms(ItemInfo("The", None, ()))


def leaked_texts(dataset: Dataset) -> dict[str, str]:
    split = make_split(dataset)
    out = {}
    for user, item in zip(split.test.users, targets(dataset, split.test), strict=True):
        out[dataset.user_ids[user]] = f"Loves {dataset.item_info[item].title} and more."
    return out


@pytest.fixture
def seed_dataset():
    if recbole_folder() is None:
        pytest.skip("recbole==1.2.1 not installed")
    from ur4rec.data.prepare import open_dataset

    return open_dataset("ml-100k-liked")


def test_audit_flags_planted_titles_and_passes_template(seed_dataset: Dataset) -> None:
    leaked = audit_texts(seed_dataset, leaked_texts(seed_dataset))
    assert leaked.leaked and leaked.test_share > 0.95 and leaked.control_share < 0.05
    clean = audit_texts(seed_dataset, template_texts(seed_dataset, "users"))
    assert not clean.leaked and clean.test_share < 0.02


@pytest.mark.skipif(not SHARED.is_dir(), reason="../shared/seed-llm-texts not present")
def test_shared_report_texts_are_flagged(seed_dataset: Dataset, tmp_path: Path, capsys) -> None:
    code = main(
        [
            "texts",
            "audit",
            "--dataset",
            "ml-100k-liked",
            "--texts",
            str(SHARED / "user_preferences.json"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 3 and out.startswith("LEAKAGE")
    ours = tmp_path / "ours.json"
    write_texts(ours, template_texts(seed_dataset, "users"), {"backend": "template"})
    assert (
        main(["texts", "audit", "--dataset", "ml-100k-liked", "--texts", str(ours), "--json"]) == 0
    )


def test_audit_on_tiny_fixture(tiny: Dataset) -> None:
    clean = audit_texts(tiny, {u: "likes films" for u in tiny.user_ids})
    assert not clean.leaked and clean.users == 3
    partial = audit_texts(tiny, {"1": "x"})
    assert partial.missing_users == 2


def test_mentions_explained_by_training_titles_do_not_count(tmp_path: Path) -> None:
    from tests.conftest import TINY_TITLES, write_ml100k
    from ur4rec.data.dataset import DatasetSpec, preprocess
    from ur4rec.data.raw import read_ml100k

    # Item 12 (in user 1's training part) has the same title as item 14 (user 1's test item),
    # as MovieLens-100K's duplicate entries do.
    titles = {**TINY_TITLES, 12: ("Alien (1979)", "Sci-Fi")}
    data = preprocess(
        read_ml100k(write_ml100k(tmp_path / "dup", titles=titles)), DatasetSpec("t", "ml-100k")
    )
    result = audit_texts(data, {"1": "Rated highest: Alien (1979)."})
    assert result.test_share == 0.0 and result.explained == 1
