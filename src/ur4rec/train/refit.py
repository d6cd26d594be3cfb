"""Refit: once validation has chosen a run's epochs (and a staged run's calibrations), train
the model again, from the same seed and with the same schedule, on the training part plus
every validation target, for those epochs, and test that model.

Validation cannot judge the refit model (it trained on the validation targets), so every
choice stays validation's: the epochs of each stage (a stage whose start was kept trains for
none), the fusion weights a stage calibrated, the config itself. What the refit adds is the
newest interaction of each user, the one nearest the test target in time. The refit lives in
``RUN/refit/``, a small run folder (its ``best.pt`` the refit model, ``inputs.pt`` what it was
built from, ``stages/`` per stage, ``done.json`` once finished); a killed refit resumes from
its last epoch. The run's summary then reports the refit model's test figures under ``test``
and the chosen checkpoint's under ``refit.test_before_refit``.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from ur4rec.config import RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import Split
from ur4rec.data.windows import TrainWindows
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.models.base import RecModel
from ur4rec.runs.checkpoint import save_checkpoint
from ur4rec.runs.layout import (
    BEST,
    LAST,
    REFIT_DIR,
    SUMMARY,
    load_state_into,
    stage_dir,
    write_run_info,
)
from ur4rec.runs.load import build, open_run, save_inputs
from ur4rec.train.distributed import world
from ur4rec.train.stages import configure
from ur4rec.train.trainer import Trainer

DONE = "done.json"
# A stage row's keys that are not a calibration's chosen values (train/stages.py).
_ROW_KEYS = {"stage", "objective", "epochs_run", "epochs_max", "best_epoch", "train_seconds"}


def refit(run_dir: Path, *, data_dir: str | None = None, quiet: bool = False) -> dict[str, Any]:
    """Refit a finished run (see the module's text); returns its updated summary. A run
    refitted before is left as it is."""
    run_dir = Path(run_dir)
    if world().distributed:
        raise Ur4recError("a refit runs in one process: run `ur4rec refit RUN` after torchrun")
    try:
        summary = json.loads((run_dir / SUMMARY).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise Ur4recError(
            f"{run_dir} has no finished run (summary.json); train or resume it first"
        ) from None
    folder = run_dir / REFIT_DIR
    if "refit" in summary and (folder / DONE).is_file():
        return summary
    cfg, dataset = open_run(run_dir, data_dir)
    model, split, windows = build(cfg, dataset, data_dir, refit=True)
    folder.mkdir(exist_ok=True)
    save_inputs(folder, model)
    start = time.perf_counter()
    if cfg.stages:
        epochs = _refit_stages(cfg, model, dataset, split, windows, folder, summary, quiet)
    elif model.trainable:
        epochs = [int(summary["best_epoch"])]
        trainer = Trainer(
            model, windows, Evaluator(dataset, split, "valid", cfg.train.eval_protocol),
            cfg.train, folder, cfg.seed, quiet=quiet,
        )  # fmt: skip
        if (folder / LAST).is_file():
            trainer.resume()
        trainer.train_epochs(epochs[0])
    else:  # fitted when built, on the longer training part
        epochs = [0]
    save_checkpoint(folder / BEST, {"model": model.state_dict(), "epoch": sum(epochs)})
    model.eval()
    test = Evaluator(dataset, split, "test", cfg.train.eval_protocol).evaluate(model)
    before = summary.get("refit", {}).get("test_before_refit", summary.get("test"))
    summary["refit"] = {
        "epochs": epochs,
        "train_seconds": round(time.perf_counter() - start, 2),
        "test_before_refit": before,
    }
    summary["test"] = test
    atomic_write_json(run_dir / SUMMARY, summary)
    atomic_write_json(folder / DONE, summary["refit"])
    write_run_info(run_dir, dataset, "finished")
    return summary


def calibration(row: dict[str, Any]) -> dict[str, float]:
    """The values a stage's calibration chose, from its row in the run's summary."""
    return {k: v for k, v in row.items() if k not in _ROW_KEYS and k != "valid"}


def _refit_stages(
    cfg: RunConfig,
    model: RecModel,
    dataset: Dataset,
    split: Split,
    windows: TrainWindows,
    folder: Path,
    summary: dict[str, Any],
    quiet: bool,
) -> list[int]:
    """Each stage for the epochs validation chose in the run, then its calibration applied as
    the run chose it; returns the epochs of each stage."""
    rows = summary.get("stages") or []
    if len(rows) != len(cfg.stages):
        raise Ur4recError(f"the run's summary has {len(rows)} stage rows for {len(cfg.stages)}")
    valid = Evaluator(dataset, split, "valid", cfg.train.eval_protocol)  # never consulted
    epochs: list[int] = []
    for index, (stage, row) in enumerate(zip(cfg.stages, rows, strict=True)):
        sub = stage_dir(folder, index, stage)
        groups = configure(model, stage, cfg)
        count = int(row["best_epoch"])  # 0: the run kept the stage's start
        epochs.append(count)
        if (sub / DONE).is_file():
            load_state_into(model, sub / BEST)
            continue
        if count > 0:
            train_cfg = replace(
                cfg.train, epochs=stage.epochs, patience=stage.patience, metric=stage.metric
            )
            trainer = Trainer(
                model, windows, valid, train_cfg, sub, seed=cfg.seed * 100 + index,
                groups=groups, quiet=quiet,
            )  # fmt: skip
            if (sub / LAST).is_file():
                trainer.resume()
            if not quiet:
                print(f"refit stage {index + 1}/{len(cfg.stages)}: {stage.name}, {count} epochs")
            trainer.train_epochs(count)
        chosen = calibration(row)
        if chosen:
            model.apply_calibration(chosen)
        sub.mkdir(parents=True, exist_ok=True)
        save_checkpoint(sub / BEST, {"model": model.state_dict(), "epoch": count})
        atomic_write_json(sub / DONE, {"stage": stage.name, "epochs": count, **chosen})
    return epochs
