"""`ur4rec tune`: Optuna trials as run folders, a search killed mid-trial and resumed, the best
config written, stages reused between trials, pruning. Small data: seconds per trial."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
import yaml

from ur4rec.cli import main
from ur4rec.config import ConfigError, load_config
from ur4rec.data.prepare import prepare_dataset
from ur4rec.errors import Ur4recError
from ur4rec.train.trainer import FitState, read_log
from ur4rec.train.tune import Pruned, _Reporter, load_space, make_pruner, tune

SETTINGS = {
    "data": {"max_len": 6},
    "model": {"hidden": 16, "heads": 2, "inner": 32, "layers": 1, "dropout": 0.0,
              "attn_dropout": 0.0},
    "train": {"batch_size": 8, "lr": 1e-2, "epochs": 3, "patience": 0},
}  # fmt: skip
SPACE = {
    "metric": "ndcg@10",
    "params": {
        "train.lr": {"type": "float", "low": 1e-3, "high": 3e-2, "log": True},
        "model.hidden": {"type": "choice", "values": [8, 16]},
    },
}

KILLED_IN_SECOND_TRIAL = """
import os, signal, sys
from ur4rec.train import run, tune

original, calls = run.train, []

def train(cfg, run_dir, **kw):
    calls.append(run_dir)
    report = kw["on_epoch_end"]
    def stop(state):
        report(state)
        if len(calls) == 2 and state.epoch == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # as a kill -9 would, mid-trial
    return original(cfg, run_dir, **{**kw, "on_epoch_end": stop})

run.train = train
tune.tune(sys.argv[1], sys.argv[2], 3, sys.argv[3], pruner="none")
"""


@pytest.fixture
def files(cyclic_folder: Path, tmp_path: Path) -> tuple[Path, Path]:
    prepare_dataset("ml-100k", source=cyclic_folder)
    config, space = tmp_path / "tiny.yaml", tmp_path / "space.yaml"
    config.write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    space.write_text(yaml.safe_dump(SPACE), encoding="utf-8")
    return config, space


def test_three_trials_killed_resumed_and_best_config_written(files, tmp_path: Path) -> None:
    config, space = files
    out = tmp_path / "search"
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_SECOND_TRIAL, str(config), str(space), str(out)],
        capture_output=True,
        text=True,
    )
    assert killed.returncode == -9, killed.stderr
    assert [row["epoch"] for row in read_log(out / "trials" / "0001" / "log.jsonl")] == [1, 2]
    args = ["tune", "--config", str(config), "--space", str(space), "--trials", "3"]
    assert main([*args, "--out", str(out), "--pruner", "none", "--json"]) == 0
    result = json.loads((out / "tune.json").read_text())
    assert result["states"] == {"complete": 3}
    with open(out / "trials.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["trial"] for r in rows] == ["0", "2", "3"]  # trial 1 was killed; 2 is its rerun
    # The rerun kept trial 1's values and its folder, and went on from its last checkpoint.
    assert rows[1]["run"].endswith("trials/0001")
    assert [row["epoch"] for row in read_log(out / "trials" / "0001" / "log.jsonl")] == [1, 2, 3]
    values = {int(r["trial"]): float(r["value"]) for r in rows}
    for r in rows:  # each value is its run's best validation NDCG@10; test is never touched
        summary = json.loads((Path(r["run"]) / "summary.json").read_text())
        assert summary["valid"]["ndcg@10"] == pytest.approx(values[int(r["trial"])])
        assert "test" not in summary
    best = result["best"]
    assert best["value"] == max(values.values())
    tuned = load_config(out / "best.yaml")  # ready for `ur4rec train --config`
    assert tuned.train.lr == pytest.approx(best["params"]["train.lr"])
    assert tuned.model.hidden == best["params"]["model.hidden"]
    assert tuned.train.epochs == 3  # the rest is the base config
    assert (out / "history.png").stat().st_size > 0
    # A finished search run again does nothing more; one with another question is refused.
    assert main([*args, "--out", str(out), "--pruner", "none", "--json"]) == 0
    assert len(list((out / "trials").iterdir())) == 3
    with pytest.raises(Ur4recError, match="another overrides"):
        tune(config, space, 3, out, overrides=["train.epochs=2"])


def test_later_stage_keys_reuse_earlier_stages(files, tmp_path: Path) -> None:
    config, space = files
    staged = {
        **SETTINGS,
        "stages": [
            {"name": "first", "epochs": 2, "train": ["sasrec"], "patience": 0},
            {"name": "second", "epochs": 2, "train": ["sasrec"], "patience": 0},
        ],
    }
    config.write_text(yaml.safe_dump(staged), encoding="utf-8")
    key = "stages.second.lr.sasrec"
    space.write_text(yaml.safe_dump({"params": {
        key: {"type": "choice", "values": [1e-3, 1e-2], "stage": "second"}
    }}))  # fmt: skip
    out = tmp_path / "s"
    out.mkdir()
    study = optuna.create_study(
        storage=f"sqlite:///{out / 'study.db'}", study_name="ur4rec", direction="maximize"
    )
    for value in (1e-3, 1e-2, 1e-2):  # the third repeats the second
        study.enqueue_trial({key: value})
    result = tune(config, space, 3, out, pruner="none")
    assert [r["reused stages"] for r in result.trials] == [0, 1, 2]
    first, second, third = (Path(r["run"]) for r in result.trials)
    assert result.trials[2]["value"] == result.trials[1]["value"]  # nothing left to train
    assert not (third / "stages" / "2-second" / "log.jsonl").exists()
    # The second trial's first stage is the first trial's, not trained again.
    assert not (second / "stages" / "1-first" / "log.jsonl").exists()
    assert (second / "stages" / "2-second" / "log.jsonl").is_file()
    done = [
        json.loads((d / "stages" / "1-first" / "done.json").read_text()) for d in (first, second)
    ]
    assert done[0] == done[1]


def test_space_errors_name_the_problem(files, tmp_path: Path, capsys) -> None:
    config, _ = files
    bad = tmp_path / "bad.yaml"
    cases = {
        "type must be one of": {"params": {"train.lr": {"type": "real", "low": 0, "high": 1}}},
        "low < high": {"params": {"train.lr": {"type": "float", "low": 1, "high": 0}}},
        "log range needs low > 0": {
            "params": {"train.lr": {"type": "float", "low": 0, "high": 1, "log": True}}
        },
        "non-empty list": {"params": {"model.hidden": {"type": "choice", "values": []}}},
        "params must map": {"metric": "ndcg@10"},
    }
    for message, data in cases.items():
        bad.write_text(yaml.safe_dump(data))
        with pytest.raises(ConfigError, match=message):
            load_space(bad)
    bad.write_text(yaml.safe_dump({"params": {"train.lrr": {"type": "choice", "values": [1]}}}))
    with pytest.raises(ConfigError, match="train.lrr"):  # misspelt: refused before any trial
        tune(config, bad, 1, tmp_path / "x")
    assert main(["tune", "--config", str(config), "--space", str(bad), "--trials", "1",
                 "--out", str(tmp_path / "y")]) == 1  # fmt: skip
    assert "unknown config key 'train.lrr'" in capsys.readouterr().err


def test_reporter_feeds_each_stage_and_prunes() -> None:
    class FakeTrial:
        def __init__(self) -> None:
            self.reports: list[tuple[float, int]] = []

        def report(self, value: float, step: int) -> None:
            self.reports.append((value, step))

        def should_prune(self) -> bool:
            return len(self.reports) >= 3

    trial = FakeTrial()
    reporter = _Reporter(trial, "ndcg@10", first_stage=0)
    state = FitState(epoch=1, history=[{"epoch": 1, "valid/ndcg@10": 0.1}])
    reporter(state)
    state.history.append({"epoch": 2, "loss": 1.0})  # no validation that epoch
    state.epoch = 2
    reporter(state)
    later = FitState(epoch=1, history=[{"epoch": 1, "valid/ndcg@10": 0.2}])
    reporter(later)  # a new stage: its own steps
    assert trial.reports == [(0.1, 1), (0.2, 10_001)]
    later.history.append({"epoch": 2, "valid/ndcg@10": 0.3})
    with pytest.raises(Pruned, match="stage 2, epoch 1"):
        reporter(later)


def test_two_worker_processes_share_one_study(files, tmp_path: Path) -> None:
    config, space = files
    result = tune(config, space, 3, tmp_path / "j", jobs=2, pruner="none")
    assert sorted(r["state"] for r in result.trials) == ["complete"] * 3
    assert len({r["run"] for r in result.trials}) == 3  # each trial its own folder


def test_median_pruner_waits_for_a_falling_curve() -> None:
    """Below the median is not enough: a trial still improving runs on, and one whose last 4
    validations all fall below its earlier best stops."""
    study = optuna.create_study(direction="maximize", pruner=make_pruner("median"))
    for _ in range(3):  # finished trials whose curves rise to 0.10
        t = study.ask()
        for step in range(1, 21):
            t.report(0.10 * step / 20, step)
        study.tell(t, 0.10)
    rising, falling = study.ask(), study.ask()
    pruned: dict[str, int | None] = {"rising": None, "falling": None}
    for step in range(1, 21):
        rising.report(0.09 * step / 20, step)  # always below the median, always improving
        falling.report(0.005 * step if step <= 4 else 0.015, step)  # best at epoch 4
        for name, trial in (("rising", rising), ("falling", falling)):
            if pruned[name] is None and trial.should_prune():
                pruned[name] = step
    assert pruned["rising"] is None
    assert pruned["falling"] == 8  # epochs 5-8 all below epoch 4's best
    with pytest.raises(Ur4recError, match="unknown pruner 'wild'"):
        make_pruner("wild")
