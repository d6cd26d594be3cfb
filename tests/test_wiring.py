"""Wiring that decides what a figure means: what is fitted on which part, what is chosen on
which part, how a repeated target is ranked, and the ``ratio`` scheme end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ur4rec.config import load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.dataset import DatasetSpec, preprocess
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.raw import read_ml100k
from ur4rec.data.splits import Prefixes, make_split, targets
from ur4rec.eval.evaluator import Evaluator
from ur4rec.models.ease import ease_weights
from ur4rec.models.ur4rec import UR4Rec
from ur4rec.runs import build
from ur4rec.runs.layout import BEST, load_state_into, stage_dir
from ur4rec.text.corpus import template_texts
from ur4rec.train import run
from ur4rec.train.stages import run_stages

from .conftest import write_ml100k
from .test_ur4rec import TINY_UR4REC

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"


def tiny_config(*overrides: str):
    return load_config(CONFIG, ["data.dataset=ml-100k", *TINY_UR4REC, *overrides])


@pytest.mark.parametrize("scheme", ["leave-one-out", "ratio"])
def test_the_ease_prior_is_fitted_on_the_training_part_only(
    cyclic_folder: Path, scheme: str
) -> None:
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    cfg = tiny_config("fusion.prior=ease", "fusion.prior_l2=7.0", f"data.scheme={scheme}")
    model, split, _ = build(cfg, dataset)
    assert isinstance(model, UR4Rec) and model.prior is not None
    expected = ease_weights(dataset, make_split(dataset, scheme).train, 7.0)
    torch.testing.assert_close(model.prior, expected, rtol=0, atol=0)
    # The comparison can tell: EASE on everything up to the test target is another matrix.
    everything = Prefixes(split.test.users, split.test.lengths)
    assert not torch.allclose(model.prior, ease_weights(dataset, everything, 7.0))


def test_stage_choices_read_the_validation_part_never_test(
    cyclic_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every evaluator a staged run makes while training (early stopping, calibration, keeping
    a stage's start) is on the validation part, and each stage's recorded validation figure
    is its handed-on checkpoint's validation score."""
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    cfg = tiny_config("fusion.prior=ease")
    model, split, windows = build(cfg, dataset)

    made: list[str] = []
    real_init = Evaluator.__init__

    def spy_init(self, dataset, split, part, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        made.append(part)
        if part != "valid":
            raise AssertionError(f"a stage made an evaluator on the {part} part")
        real_init(self, dataset, split, part, *args, **kwargs)

    calibrated_on: list[bool] = []
    real_calibrate = UR4Rec.calibrate

    def spy_calibrate(self, valid, metric, stages):  # type: ignore[no-untyped-def]
        calibrated_on.append(valid.part == "valid" and valid.prefixes is split.valid)
        return real_calibrate(self, valid, metric, stages)

    monkeypatch.setattr(Evaluator, "__init__", spy_init)
    monkeypatch.setattr(UR4Rec, "calibrate", spy_calibrate)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    rows = run_stages(cfg, model, dataset, split, windows, run_dir, quiet=True)
    monkeypatch.undo()
    assert made == ["valid"]
    # Calibration after each of the four stages, and once more from each later stage's start.
    assert len(calibrated_on) == 4 + 3 and all(calibrated_on)
    assert any("sasrec_weight" in r for r in rows)
    valid = Evaluator(dataset, split, "valid", "full")
    for index, (stage, row) in enumerate(zip(cfg.stages, rows, strict=True)):
        load_state_into(model, stage_dir(run_dir, index, stage) / BEST)
        model.set_objective(stage.objective)
        model.eval()
        assert valid.evaluate(model)["ndcg@10"] == pytest.approx(row["valid"]["ndcg@10"])


class FixedScores:
    def __init__(self, scores: list[float]) -> None:
        self.scores = torch.tensor(scores)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.scores.expand(len(batch.users), -1).clone()


def test_a_repeated_target_keeps_its_rank_under_full_ranking(tmp_path: Path) -> None:
    # User 1 watches item 10 again at the end: the test target is also in its own history.
    ratings = [(1, 10, 5, 100), (1, 11, 4, 200), (1, 10, 5, 300), (1, 12, 4, 400),
               (1, 10, 5, 500), (2, 11, 5, 100), (2, 12, 5, 200), (2, 13, 4, 300),
               (2, 14, 4, 400)]  # fmt: skip
    dataset = preprocess(read_ml100k(write_ml100k(tmp_path / "r", ratings)), DatasetSpec("r", "x"))
    split = make_split(dataset)
    user = int(np.flatnonzero(split.test.users == 0)[0])
    target = int(targets(dataset, split.test)[user])
    history = dataset.sequence(0)[: split.test.lengths[user]].tolist()
    assert target in history  # the case under test
    # Items 10..14 are 0..4. History {0, 1, 2} is masked; the target (0.5) keeps its score and
    # is beaten by items 3 (0.8) and 4 (0.7) only.
    ranks = Evaluator(dataset, split, "test", "full").ranks(FixedScores([0.5, 0.9, 0.1, 0.8, 0.7]))
    assert int(ranks[user]) == 2
    # Ranked first when it scores highest, though every other history item scores higher still.
    ranks = Evaluator(dataset, split, "test", "full").ranks(FixedScores([0.95, 2, 3, 0.8, 0.7]))
    assert int(ranks[user]) == 0


def test_the_ratio_scheme_end_to_end(cyclic_folder: Path, tmp_path: Path) -> None:
    """Texts, audit, prior, training windows and evaluation all follow the ratio split."""
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    ratio, loo = make_split(dataset, "ratio"), make_split(dataset, "leave-one-out")
    assert not np.array_equal(ratio.train.lengths, loo.train.lengths)

    # User texts: from the ratio training part; the leave-one-out texts say more.
    texts = template_texts(dataset, "users", "ratio", titles=False)
    assert texts != template_texts(dataset, "users", "leave-one-out", titles=False)

    # The audit holds out the ratio parts: a text naming each user's ratio validation target
    # (an item inside the leave-one-out training part) is leakage under ratio only.
    named = {
        dataset.user_ids[u]: f"Loves {dataset.item_info[t].title}."
        for u, t in zip(ratio.valid.users, targets(dataset, ratio.valid), strict=True)
    }
    path = tmp_path / "named.json"
    path.write_text(json.dumps(named))
    from ur4rec.text.audit import audit_texts

    assert audit_texts(dataset, named, "ratio").leaked
    assert not audit_texts(dataset, named, "leave-one-out").leaked
    with pytest.raises(Exception, match="leakage audit"):
        run.train(tiny_config("data.scheme=ratio", f"text.user_texts={path}"), tmp_path / "bad")

    cfg = tiny_config("data.scheme=ratio", "fusion.prior=ease")
    model, _, windows = build(cfg, dataset)
    # Training windows: one target per training position after the first, ratio part only.
    assert windows.n_targets == int(np.maximum(ratio.train.lengths - 1, 0).sum())
    torch.testing.assert_close(model.prior, ease_weights(dataset, ratio.train, 500.0))
    out = run.train(cfg, tmp_path / "run", quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["scheme"] == "ratio" and summary["test"]["users"] == len(ratio.test)
    assert run.evaluate(out, "full", "valid")["users"] == len(ratio.valid)
    assert run.evaluate(out)["ndcg@10"] == pytest.approx(summary["test"]["ndcg@10"])
