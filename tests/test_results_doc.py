"""docs/results.md's generated tables: rendered from the result files, and current."""

import json
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_doc  # noqa: E402


@pytest.mark.parametrize("doc", results_doc.DOCS, ids=lambda d: d.name)
def test_docs_results_tables_are_current(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert results_doc.render(text) == text, "run: .venv/bin/python benchmarks/results_doc.py"


def test_a_table_is_rendered_between_its_markers(tmp_path: Path) -> None:
    rows = [
        {"config": "gru4rec-x", "seed": s, "command": "benchmarks/backbones.py --seeds 1,2",
         "protocol": p, "split": part, "ndcg@10": 0.1 * s, "hit@10": 0.2 * s}
        for s in (1, 2) for p in ("full", "seed") for part in ("valid", "test")
    ]  # fmt: skip
    (tmp_path / "backbones.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = "intro\n<!-- table: backbones -->\nstale text\n<!-- end table -->\noutro\n"
    out = results_doc.render(doc, tmp_path)
    assert out.startswith("intro\n<!-- table: backbones -->\n`.venv/bin/python benchmarks/")
    assert "stale text" not in out and out.endswith("<!-- end table -->\noutro\n")
    assert "| gru4rec-x (older code) | full | 0.1500 ± 0.0707 | 0.3000 ± 0.1414 |" in out
    # A table whose result file is missing stays as it was.
    assert results_doc.render(doc, tmp_path / "none") == doc


def test_report_estimates_pairs_hits_and_renders(tmp_path: Path) -> None:
    import numpy as np

    import report_estimates

    rng = np.random.default_rng(0)

    def seed_ranks(hit_share: float) -> dict[str, np.ndarray]:
        # 200 users: the first hit_share of them rank the target first, the rest at 50.
        hits = np.arange(200) < int(200 * hit_share)
        ranks = np.where(hits, 0, 50)
        return {f"{p} {c}": ranks + (c == "full") * rng.integers(0, 3, 200)
                for p in ("valid", "test") for c in ("full", "sampled-with-history:99")}  # fmt: skip

    a = [seed_ranks(0.6) for _ in range(3)]
    b = [seed_ranks(0.4) for _ in range(3)]
    out = report_estimates.compare(a, b)
    test = out["test"]
    assert test["sampled hit@10 a"]["mean"] == pytest.approx(0.6)
    assert test["sampled hit@10 relative"] == pytest.approx(0.5)
    diff = test["sampled hit@10 difference"]
    assert diff["mean"] == pytest.approx(0.2) and diff["users_low"] < 0.2 < diff["users_high"]
    assert diff["seeds_better"] == 3
    # Every change names variants that exist, and the record renders as a table.
    for _, va, vb, _ in report_estimates.ROWS:
        assert va in report_estimates.VARIANTS and vb in report_estimates.VARIANTS
    record = {"dataset": "d", "seeds": "1-3", "command": "benchmarks/report_estimates.py",
              "time": "2026-12-03T00:00:00", "missing": ["negatives"],
              "rows": [{"change": "c", "a": "x", "b": "y", "estimate": "+5-8%", **out}]}  # fmt: skip
    (tmp_path / "report-estimates.json").write_text(json.dumps(record))
    doc = "<!-- table: report-estimates -->\n<!-- end table -->\n"
    text = results_doc.render(doc, tmp_path)
    assert "| c (older code) | +5-8% | 0.6000 / 0.4000 | +50.0% | +0.2000 [" in text
    assert "Not measured yet (no runs): negatives." in text


def test_report_estimates_keeps_earlier_rows_whose_runs_are_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rerun without some variants' run folders keeps the rows measured before (for the same
    dataset and seeds) rather than dropping them; other datasets' rows are not borrowed."""
    import report_estimates

    change = report_estimates.ROWS[1][0]
    results = tmp_path / "report-estimates.json"
    earlier = {"dataset": "d", "seeds": "1-3", "missing": [],
               "rows": [{"change": change, "a": "x", "b": "y", "estimate": "+5-8%"}]}  # fmt: skip
    results.write_text(json.dumps(earlier))
    argv = ["report_estimates.py", "--seeds", "1-3", "--dataset", "d",
            "--runs", str(tmp_path / "runs"), "--results", str(results)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    report_estimates.main()
    record = json.loads(results.read_text())
    assert [r["change"] for r in record["rows"]] == [change]
    assert len(record["missing"]) == len(report_estimates.ROWS) - 1
    # Another dataset's record is not a source: with nothing measured the call fails.
    monkeypatch.setattr(sys, "argv", [*argv[:4], "other", *argv[5:]])
    with pytest.raises(SystemExit, match="no comparison had its runs"):
        report_estimates.main()
    assert json.loads(results.read_text()) == record


def test_report_estimates_as_stored_reads_runs_without_retraining(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--as-stored ranks finished runs of any code from their checkpoints; without it a run
    goes through ranks_of, which trains a run of other code again."""
    import numpy as np

    import report_estimates

    _, a, b, _ = report_estimates.ROWS[0]
    for variant in (a, b):
        for seed in (1, 2):
            run = tmp_path / "runs" / f"d-{report_estimates.slug(variant)}-s{seed}"
            run.mkdir(parents=True)
            (run / "summary.json").write_text("{}")
            (run / "run.json").write_text('{"provenance": {"code": {"source_hash": "old"}}}')
    hits = np.where(np.arange(100) < 60, 0, 50)
    ranks = {
        f"{p} {c}": hits for p in ("valid", "test") for c in ("full", "sampled-with-history:99")
    }
    read: list[str] = []

    def stored(run_dir: Path, cases: list, data_dir: str | None = None) -> dict:
        read.append(Path(run_dir).name)
        return ranks

    def retrain(run_dir: Path, data_dir: str | None = None) -> dict:
        raise AssertionError("--as-stored must not train runs again")

    monkeypatch.setattr(report_estimates, "cached_ranks", stored)
    monkeypatch.setattr(report_estimates, "ranks_of", retrain)
    results = tmp_path / "out.json"
    monkeypatch.setattr(sys, "argv", ["report_estimates.py", "--seeds", "1-2", "--dataset", "d",
                                      "--runs", str(tmp_path / "runs"), "--results", str(results),
                                      "--as-stored"])  # fmt: skip
    report_estimates.main()
    assert len(read) == 4
    (row,) = json.loads(results.read_text())["rows"]
    assert row["change"] == report_estimates.ROWS[0][0]
    assert row["test"]["sampled hit@10 a"]["mean"] == pytest.approx(0.6)


def test_a_variant_stands_for_one_code_only() -> None:
    """Seeds of other code are not averaged together: the current code's runs stand for a
    variant, else those of the code that ran the most of them."""

    def run(seed: int, source: str) -> dict:
        return {"seed": seed, "provenance": {"code": {"source_hash": source}}}

    old, newer = run(42, "aaa"), [run(s, "bbb") for s in (43, 44, 45)]
    assert results_doc._current_or_all([old, *newer]) == newer
    assert results_doc._current_or_all([*newer, old]) == newer
    tie = [run(1, "aaa"), run(2, "bbb")]
    assert results_doc._current_or_all(tie) == [tie[1]]  # the later listed
    assert results_doc._current_or_all([]) == []


def test_a_rehearsal_refit_table_says_its_test_part_is_validation(tmp_path: Path) -> None:
    cell = {
        "refit": [0.11, 0.12], "chosen": [0.10, 0.11],
        "difference": {"mean": 0.01, "users_low": 0.0, "users_high": 0.02,
                       "seeds_low": -0.01, "seeds_high": 0.03, "seeds_better": 2, "seeds": 2},
    }  # fmt: skip
    row = {
        "config": "ur4rec-x", "seeds": [1, 2], "epochs": [[3, 1], [2, 2]],
        "cases": [{"split": "test", "protocol": "full", "ndcg@10": cell, "hit@10": cell}],
    }  # fmt: skip
    data = {"rows": [row], "dataset": "toy", "scheme": "rehearsal",
            "provenance": {"command": "benchmarks/refit.py --scheme rehearsal"}}  # fmt: skip
    (tmp_path / "refit-rehearsal.json").write_text(json.dumps(data))
    doc = "<!-- table: refit-rehearsal -->\n<!-- end table -->\n"
    out = results_doc.render(doc, tmp_path)
    assert "(toy, split rehearsal, test: leave-one-out's validation targets, seeds 1, 2;" in out
    assert "| ur4rec-x (older code) | full | 0.1050 ± 0.0071 | 0.1150 ± 0.0071 |" in out
    assert "3/1; 2/2" in out


def test_rp3beta_window_is_chosen_on_validation_and_rendered(
    cyclic_folder: Path, tmp_path: Path
) -> None:
    """benchmarks/baselines.py: the window whose best setting leads validation is chosen and
    measured once on test as the windowed model; the doc marks it and states its test figure."""
    import baselines
    from ur4rec.data.prepare import prepare_dataset
    from ur4rec.data.splits import make_split
    from ur4rec.eval.baselines import build_baseline
    from ur4rec.eval.evaluator import Evaluator

    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder, root=str(tmp_path / "data"))
    split = make_split(dataset)
    by_window = {
        0: [{"alpha": 0.5, "beta": 0.0, "ndcg@10": 0.20}, {"alpha": 1.0, "beta": 0.0, "ndcg@10": 0.1}],
        2: [{"alpha": 0.5, "beta": 0.25, "ndcg@10": 0.3}, {"alpha": 1.0, "beta": 0.5, "ndcg@10": 0.25}],
        3: [{"alpha": 0.5, "beta": 0.0, "ndcg@10": 0.3}],
    }  # fmt: skip
    chosen = baselines.rp3beta_window(dataset, split, by_window)
    # 2 and 3 tie at 0.3: the longer window wins the tie.
    assert (chosen["recent"], chosen["alpha"], chosen["beta"]) == (3, 0.5, 0.0)
    model = build_baseline("rp3beta", dataset, split, alpha=0.5, beta=0.0, recent=3)
    test = Evaluator(dataset, split, "test", "full").evaluate(model)
    assert chosen["test_ndcg@10"] == pytest.approx(float(test["ndcg@10"]))
    assert chosen["valid_ndcg@10"] == 0.3
    rows = [{"dataset": dataset.name, "recent": w, **r} for w, rs in by_window.items() for r in rs]
    record = {"provenance": {"command": "benchmarks/baselines.py"}, "time": "2026-12-08T00:00",
              "rp3beta_sweep": rows, "rp3beta_window": [chosen]}  # fmt: skip
    (tmp_path / "baselines.json").write_text(json.dumps(record))
    text = results_doc.render("<!-- table: rp3beta-window -->\n<!-- end table -->\n", tmp_path)
    assert (
        "| all items | 0.5 / 0 | 0.2000 |" in text and "| last 3 | 0.5 / 0 | **0.3000** |" in text
    )
    assert (
        f"Chosen on validation: the last 3, alpha 0.5, beta 0; test NDCG@10 {chosen['test_ndcg@10']:.4f}"
        in text
    )
    # The whole-history table reads only the rows of window 0.
    whole = results_doc.render("<!-- table: rp3beta-sweep -->\n<!-- end table -->\n", tmp_path)
    assert "| 0.5 | **0.2000** |" in whole and "0.3000" not in whole


@pytest.mark.parametrize("last", [True, False])
def test_protocol_calibration_replays_the_models_rule_for_own_items(last: bool) -> None:
    """The evaluator ranks a user's own items last under 1+99 only when the scorer says so;
    the replayed fused scores must carry the model's rule, or 1+99 is measured the old way."""
    from types import SimpleNamespace

    import protocol_calibration

    model = SimpleNamespace(seen_items_last=last, combine=lambda out: out["x"])
    cached = [{"x": torch.tensor([[1.0, 2.0]])}]
    replayed = protocol_calibration._Replayed(model, cached, torch.tensor([0.5, 0.0]))
    assert replayed.seen_items_last is last
    assert torch.equal(replayed.score(None), torch.tensor([[1.5, 2.0]]))
