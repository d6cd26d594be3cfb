import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import ConfigError, load_config, validate
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.splits import make_split, targets, with_validation_targets
from ur4rec.errors import Ur4recError
from ur4rec.runs.checkpoint import load_checkpoint
from ur4rec.runs.load import load_run
from ur4rec.train import run
from ur4rec.train.refit import refit
from ur4rec.train.trainer import Trainer, read_log

from .test_trainer import TINY
from .test_ur4rec import TINY_UR4REC, train_tiny


@pytest.fixture
def prepared(cyclic_folder: Path) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)


@pytest.mark.parametrize("scheme", ["leave-one-out", "ratio", "cold-items", "rehearsal"])
def test_refit_trains_on_the_validation_targets_and_never_the_test_ones(
    tiny: Dataset, scheme: str
) -> None:
    split = make_split(tiny, scheme)
    longer = with_validation_targets(tiny, split)
    assert np.array_equal(longer.users, split.train.users)
    row = {int(u): i for i, u in enumerate(longer.users)}
    validated = [row[int(u)] for u in split.valid.users]
    assert np.array_equal(longer.lengths[validated], split.valid.lengths + 1)
    others = np.setdiff1d(np.arange(len(longer)), validated)
    assert np.array_equal(longer.lengths[others], split.train.lengths[others])
    # Each validation target is now the last training item; no test target is inside.
    last = tiny.item[tiny.offsets[longer.users[validated]] + longer.lengths[validated] - 1]
    assert np.array_equal(last, targets(tiny, split.valid))
    at = [row[int(u)] for u in split.test.users]
    assert (longer.lengths[at] <= split.test.lengths).all()
    assert longer.skip is split.train.skip  # new items of a cold split stay unseen


def test_a_rehearsal_refit_trains_on_leave_one_out_training_part(tiny: Dataset) -> None:
    # So a rehearsal's refit - chosen on its test part is a validation measurement of a refit.
    loo, back = make_split(tiny), make_split(tiny, "rehearsal")
    longer = with_validation_targets(tiny, back)
    users = back.test.users
    assert np.array_equal(longer.lengths[users], loo.train.lengths[users])
    assert np.array_equal(longer.lengths[users], back.test.lengths)


def test_cold_time_has_no_training_part_to_extend(tiny: Dataset) -> None:
    with pytest.raises(Ur4recError, match="not its user's training part"):
        with_validation_targets(tiny, make_split(tiny, "cold-time:0.5"))
    with pytest.raises(ConfigError, match="train.refit"):
        validate(load_config(None, ["train.refit=true", "data.scheme=cold-time"]))


def test_refit_sasrec_follows_the_chosen_epochs_and_becomes_the_final_model(
    prepared, tmp_path: Path
) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=5", "train.refit=true"])
    out = run.train(cfg, tmp_path / "r", quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    best = summary["best_epoch"]
    assert summary["refit"]["epochs"] == [best]
    log, refit_log = read_log(out / "log.jsonl"), read_log(out / "refit" / "log.jsonl")
    assert [r["epoch"] for r in refit_log] == list(range(1, best + 1))
    # The same schedule (epoch k at the run's rate), on other data (other losses).
    assert [r["lr/model"] for r in refit_log] == [r["lr/model"] for r in log[:best]]
    assert [r["loss"] for r in refit_log] != [r["loss"] for r in log[:best]]
    # test: the refit model; test_before_refit: the checkpoint validation chose.
    assert run.evaluate(out, "full", "test")["ndcg@10"] == summary["test"]["ndcg@10"]
    chosen = run.evaluate(out, "full", "test", checkpoint="best")
    assert chosen["ndcg@10"] == summary["refit"]["test_before_refit"]["ndcg@10"]
    # Validation can only measure the chosen checkpoint.
    assert run.evaluate(out, "full", "valid")["ndcg@10"] == pytest.approx(
        summary["valid"]["ndcg@10"]
    )
    with pytest.raises(Ur4recError, match="validation targets"):
        run.evaluate(out, "full", "valid", checkpoint="refit")
    # Serving and reports load the refit weights.
    _, _, model = load_run(out, part="serve")
    weights = load_checkpoint(out / "refit" / "best.pt")["model"]
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    ranks = run.user_ranks(out, [("valid", "full"), ("test", "full")])
    assert list(ranks) == ["valid full", "test full"]


def test_train_refit_in_the_config_is_ur4rec_refit_after_training(prepared, tmp_path: Path) -> None:
    # So one plain run measures both a config and the same config with train.refit: true.
    base = [*TINY, "train.epochs=3"]
    with_refit = run.train(
        load_config(None, [*base, "train.refit=true"]), tmp_path / "a", quiet=True
    )
    plain = run.train(load_config(None, base), tmp_path / "b", quiet=True)
    refit(plain, quiet=True)
    a = load_checkpoint(with_refit / "refit" / "best.pt")["model"]
    b = load_checkpoint(plain / "refit" / "best.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    summaries = [json.loads((d / "summary.json").read_text()) for d in (with_refit, plain)]
    assert summaries[0]["test"] == summaries[1]["test"]
    assert summaries[0]["refit"]["test_before_refit"] == summaries[1]["refit"]["test_before_refit"]


def test_a_killed_refit_resumes_to_the_same_model(
    prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=4", "model.dropout=0.3"])
    whole = run.train(cfg, tmp_path / "whole", quiet=True)
    part = run.train(cfg, tmp_path / "part", quiet=True)
    assert json.loads((whole / "summary.json").read_text())["best_epoch"] >= 2
    refit(whole, quiet=True)
    original = Trainer._train_epoch

    def killed_at_two(self, epoch, disabled):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(self, epoch, disabled)

    monkeypatch.setattr(Trainer, "_train_epoch", killed_at_two)
    with pytest.raises(KeyboardInterrupt):
        refit(part, quiet=True)
    assert not (part / "refit" / "best.pt").exists()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    resumed = refit(part, quiet=True)
    a = load_checkpoint(whole / "refit" / "best.pt")["model"]
    b = load_checkpoint(part / "refit" / "best.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["test"] == json.loads((whole / "summary.json").read_text())["test"]


def test_refit_of_a_staged_run_keeps_each_stage_epochs_and_calibration(
    cyclic_folder: Path, tmp_path: Path, capsys
) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)
    stages = next(o for o in TINY_UR4REC if o.startswith("stages="))
    out = tmp_path / "run"
    summary = train_tiny(out, stages, "fusion.prior=ease")
    assert "refit" not in summary
    assert main(["refit", str(out), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    kept = json.loads((out / "summary.json").read_text())
    assert printed["epochs"] == [s["best_epoch"] for s in kept["stages"]]
    assert kept["refit"]["test_before_refit"] == summary["test"]
    for index, stage in enumerate(kept["stages"], start=1):
        done = json.loads(next((out / "refit" / "stages").glob(f"{index}-*/done.json")).read_text())
        assert done["epochs"] == stage["best_epoch"]
        if "sasrec_weight" in stage:
            assert done["sasrec_weight"] == stage["sasrec_weight"]
            assert done["prior_weight"] == stage["prior_weight"]
    _, _, model = load_run(out)
    last = kept["stages"][-1]
    assert model.fusion.fixed_weight.item() == pytest.approx(last["sasrec_weight"])
    assert model.fusion.prior_weight.item() == pytest.approx(last["prior_weight"])
    # A second refit finds it done and changes nothing.
    assert main(["refit", str(out), "--json", "--quiet"]) == 0
    assert json.loads(capsys.readouterr().out)["test"] == kept["test"]


def test_refit_needs_a_finished_run(tmp_path: Path) -> None:
    with pytest.raises(Ur4recError, match="no finished run"):
        refit(tmp_path)


def test_a_refit_baseline_counts_the_validation_targets(tiny: Dataset) -> None:
    from ur4rec.eval.baselines import build_baseline

    split = make_split(tiny, "leave-one-out")
    plain = build_baseline("pop", tiny, split).counts
    refitted = build_baseline("pop", tiny, split, refit=True).counts
    added = np.bincount(targets(tiny, split.valid), minlength=tiny.n_items)
    assert torch.equal(refitted - plain, torch.from_numpy(added).float())


def test_the_report_of_a_refit_run_says_so(prepared, tmp_path: Path) -> None:
    from ur4rec.report.build import write_report

    out = run.train(load_config(None, [*TINY, "train.epochs=2"]), tmp_path / "r", quiet=True)
    assert "this run is refit" not in write_report(out).read_text()
    refit(out, quiet=True)
    text = write_report(out).read_text()
    assert "this run is refit" in text
    assert f"{json.loads((out / 'summary.json').read_text())['test']['ndcg@10']:.4f}" in text
