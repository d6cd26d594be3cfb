"""The CLI end to end, in a subprocess-free way (main() with argv), on real and tiny data."""

import json
from pathlib import Path

import pytest

from ur4rec.cli import main
from ur4rec.data.sources import recbole_folder

needs_recbole = pytest.mark.skipif(recbole_folder() is None, reason="recbole==1.2.1 not installed")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_from_folder_then_baseline_json(capsys, tiny_folder: Path) -> None:
    code, out, _ = run(capsys, "data", "prepare", "ml-100k", "--source", str(tiny_folder), "--json")
    assert code == 0
    manifest = json.loads(out)
    assert manifest["counts"]["interactions"] == 16 and manifest["reused"] is False
    code, out, _ = run(capsys, "data", "prepare", "ml-100k")
    assert code == 0 and out.startswith("reused ml-100k")
    code, out, _ = run(
        capsys, "baseline", "pop", "--dataset", "ml-100k", "--protocol", "sampled:2",
        "--split", "valid", "--ks", "1,3", "--json",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert {"hit@1", "ndcg@3", "mrr@3", "dataset", "protocol", "split", "users"} <= set(result)
    assert result["users"] == 3 and result["protocol"] == "sampled:2"


def test_baseline_refit_fits_on_the_validation_targets(capsys, tiny_folder: Path) -> None:
    from ur4rec.data.prepare import open_dataset
    from ur4rec.data.splits import make_split
    from ur4rec.eval.baselines import build_baseline
    from ur4rec.eval.evaluator import Evaluator

    assert run(capsys, "data", "prepare", "ml-100k", "--source", str(tiny_folder))[0] == 0
    args = ("baseline", "pop", "--dataset", "ml-100k", "--protocol", "sampled:1", "--json")
    code, out, err = run(capsys, *args, "--refit")
    assert code == 0, err
    result = json.loads(out)
    assert result["fitted_on"] == "training part and validation targets"
    dataset = open_dataset("ml-100k")
    split = make_split(dataset)
    evaluator = Evaluator(dataset, split, "test", "sampled:1")
    expected = evaluator.evaluate(build_baseline("pop", dataset, split, refit=True))
    plain = evaluator.evaluate(build_baseline("pop", dataset, split))
    assert result["ndcg@10"] == pytest.approx(expected["ndcg@10"], abs=1e-12)
    assert result["ndcg@10"] != pytest.approx(plain["ndcg@10"])  # the data tells them apart
    code, out, _ = run(capsys, *args)
    assert json.loads(out)["ndcg@10"] == pytest.approx(plain["ndcg@10"], abs=1e-12)
    assert "fitted_on" not in json.loads(out)
    # Measured on what it was fitted on, it would flatter itself: refused.
    code, _, err = run(capsys, *args, "--refit", "--split", "valid")
    assert code == 1 and "--refit fits on the validation targets" in err


@needs_recbole
def test_seed_protocol_popularity_matches_known_figure(capsys) -> None:
    """The report's protocol on the report's data: popularity's figure, pinned (it is
    deterministic: the candidates are drawn with a fixed seed), with the user's own items
    among the candidates as scored and, by default, ranked last."""
    args = ("baseline", "pop", "--dataset", "ml-100k-liked", "--protocol", "seed", "--json")
    for seen, hit, ndcg in (("keep", 0.4009, 0.2048), ("auto", 0.4510, 0.2442)):
        code, out, _ = run(capsys, *args, "--seen-items", seen)
        assert code == 0
        result = json.loads(out)
        assert result["users"] == 938 and result["protocol"] == "sampled-with-history:99"
        assert result["seen_items"] == ("scored" if seen == "keep" else "last")
        assert result["hit@10"] == pytest.approx(hit, abs=1e-4)
        assert result["ndcg@10"] == pytest.approx(ndcg, abs=1e-4)
    code, out, _ = run(capsys, *args[:-1])
    assert code == 0 and "the user's own items ranked last" in out
    code, out, _ = run(capsys, "baseline", "pop", "--dataset", "ml-100k-liked")
    assert code == 0 and "hit@10" in out


# (dataset, protocol, model): (EASE's lambda chosen on validation, Hit@10, NDCG@10) on test.
PINNED_BASELINES = {
    ("ml-100k", "full", "pop"): (None, 0.0838, 0.0432),
    ("ml-100k", "full", "ease"): (100.0, 0.1432, 0.0711),
    ("ml-100k", "full", "ease-recent"): (5000.0, 0.1824, 0.0938),
    ("ml-100k", "sampled-with-history:99", "ease-recent"): (5000.0, 0.7158, 0.4435),
    ("ml-100k-liked", "full", "pop"): (None, 0.0810, 0.0406),
    ("ml-100k-liked", "full", "ease"): (150.0, 0.1386, 0.0781),
    ("ml-100k-liked", "full", "ease-recent"): (500.0, 0.1567, 0.0889),
    ("ml-100k-liked", "sampled-with-history:99", "pop"): (None, 0.4510, 0.2442),
    ("ml-100k-liked", "sampled-with-history:99", "ease"): (150.0, 0.6514, 0.3904),
}


@needs_recbole
def test_quickstart_prints_table(capsys) -> None:
    code, out, _ = run(capsys, "quickstart", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 12
    by = {(r["dataset"], r["protocol"], r["model"]): r for r in rows}
    assert set(PINNED_BASELINES) <= set(by)
    for key, (l2, hit, ndcg) in PINNED_BASELINES.items():
        row = by[key]
        assert row.get("lambda") == l2, key
        assert row["hit@10"] == pytest.approx(hit, abs=1e-4), key
        assert row["ndcg@10"] == pytest.approx(ndcg, abs=1e-4), key


@needs_recbole
def test_ease_lambda_is_chosen_on_validation(capsys) -> None:
    """`ur4rec baseline ease` picks lambda by validation NDCG@10 over the grid; an explicit
    --lambda is used as given."""
    from ur4rec.data.prepare import open_dataset
    from ur4rec.data.splits import make_split
    from ur4rec.eval.baselines import EASE_L2_GRID, ease_sweep

    dataset = open_dataset("ml-100k-liked")
    sweep = ease_sweep(dataset, make_split(dataset), recent=0)
    assert [r["lambda"] for r in sweep] == list(EASE_L2_GRID) and min(EASE_L2_GRID) < 250
    best = max(sweep, key=lambda r: r["ndcg@10"])
    code, out, _ = run(
        capsys, "baseline", "ease", "--dataset", "ml-100k-liked", "--split", "valid", "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["lambda"] == best["lambda"] == 150.0
    assert result["lambda_from"] == "validation"
    assert result["ndcg@10"] == pytest.approx(best["ndcg@10"], abs=1e-12)
    # Every other point of the grid scores lower on validation.
    assert all(r["ndcg@10"] < best["ndcg@10"] for r in sweep if r is not best)
    code, out, _ = run(
        capsys, "baseline", "ease", "--dataset", "ml-100k-liked", "--lambda", "500", "--json"
    )
    result = json.loads(out)
    assert result["lambda"] == 500.0 and result["lambda_from"] == "--lambda"
    assert result["ndcg@10"] == pytest.approx(0.0749, abs=1e-4)


def test_errors_are_clear_and_non_zero(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "baseline", "pop", "--dataset", "ml-100k", "--protocol", "top:5")
    assert code == 1 and "unknown protocol 'top:5'" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "u.data").write_text("1\t2\t3\n")
    (bad / "u.item").write_text("")
    code, _, err = run(capsys, "data", "prepare", "ml-100k", "--source", str(bad))
    assert code == 1 and "u.data:1: expected 4 fields" in err
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "ml-10m"])
    assert exc.value.code == 2
    assert "invalid choice: 'ml-10m'" in capsys.readouterr().err
