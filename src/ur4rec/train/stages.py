"""Training in stages, for any model (a config with ``stages:``).

Each stage names the modules that learn (the model's parameter groups; the others are
frozen), their learning rates and clipping norms (default: ``train.lr`` and
``train.clip_norm``), its epochs, patience and validation metric, and its objective (one of
the model's, e.g. UR4Rec's ``sasrec``, ``retriever`` or ``fused``). After a stage the model
may calibrate what is chosen rather than trained on validation. The best checkpoint of a
stage starts the next; a stage none of whose epochs beats its start on validation hands its
start on. Stages live in ``RUN/stages/<i>-<name>/``; a finished stage leaves ``done.json``, so
a resumed run skips it and continues the stage in progress from its ``last.pt``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ur4rec.config import RunConfig, StageConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import Split
from ur4rec.data.windows import TrainWindows
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.measures import SAMPLED_99
from ur4rec.models.base import Calibration, RecModel
from ur4rec.report_table import format_table
from ur4rec.runs.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from ur4rec.runs.layout import BEST, load_state_into, stage_dir
from ur4rec.train.distributed import world
from ur4rec.train.trainer import FitState, ParamGroup, Trainer


def configure(model: RecModel, stage: StageConfig, cfg: RunConfig) -> list[ParamGroup]:
    """Freeze every module the stage does not train; one parameter group per trained one."""
    params = model.parameter_groups()
    unknown = [m for m in stage.train if m not in params]
    if unknown:
        raise Ur4recError(
            f"stage {stage.name!r}: unknown module {unknown[0]!r}; known: {', '.join(params)}"
        )
    for name, group in params.items():
        for p in group:
            p.requires_grad_(name in stage.train)
    groups = [
        ParamGroup(
            name,
            params[name],
            stage.lr.get(name, cfg.train.lr),
            stage.clip.get(name, cfg.train.clip_norm),
            cfg.train.weight_decay,
        )
        for name in stage.train
        if params[name]
    ]
    if not groups:
        raise Ur4recError(f"stage {stage.name!r} trains nothing (modules {stage.train})")
    model.begin_stage(stage.objective, list(stage.train))
    return groups


def run_stages(
    cfg: RunConfig,
    model: RecModel,
    dataset: Dataset,
    split: Split,
    windows: TrainWindows,
    run_dir: Path,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every stage in turn; returns one row per stage (validation metrics)."""
    valid = Evaluator(dataset, split, "valid", cfg.train.eval_protocol)
    here = world()
    rows = []
    for index, stage in enumerate(cfg.stages):
        folder = stage_dir(run_dir, index, stage)
        done = folder / "done.json"
        if done.is_file():
            load_state_into(model, folder / BEST)
            configure(model, stage, cfg)
            rows.append(json.loads(done.read_text(encoding="utf-8")))
            continue
        groups = configure(model, stage, cfg)
        train_cfg = replace(
            cfg.train, epochs=stage.epochs, patience=stage.patience, metric=stage.metric
        )
        trainer = Trainer(
            model, windows, valid, train_cfg, folder,
            seed=cfg.seed * 100 + index, groups=groups, quiet=quiet, on_epoch_end=on_epoch_end,
        )  # fmt: skip
        if (folder / "last.pt").is_file():
            trainer.resume()
        if not quiet and here.main:
            print(f"stage {index + 1}/{len(cfg.stages)}: {stage.name} ({stage.objective})")
        state = trainer.fit()
        if state.best_epoch < 0:
            raise Ur4recError(f"stage {stage.name!r} ended without a validation pass")
        load_state_into(model, folder / BEST)
        calibrated = model.calibrate(valid, stage.metric, cfg.stages[: index + 1])
        best_valid = calibrated.metrics if calibrated is not None else state.best_valid()
        kept_start = False
        if index > 0:
            # Early stopping that counts the start as epoch 0: when no epoch beats the
            # stage's start (the previous stage's best, scored the same way), hand that on.
            load_state_into(model, stage_dir(run_dir, index - 1, cfg.stages[index - 1]) / BEST)
            model.set_objective(stage.objective)
            start = model.calibrate(valid, stage.metric, cfg.stages[: index + 1])
            if start is None:
                model.eval()
                start = Calibration({}, _metrics(valid.evaluate(model)))
            kept_start = start.metrics[stage.metric] > best_valid[stage.metric]
            if kept_start:
                calibrated = start if calibrated is not None else None
                best_valid = start.metrics
            else:
                load_state_into(model, folder / BEST)
                if calibrated is not None:
                    model.apply_calibration(calibrated.chosen)
        if calibrated is not None or kept_start:
            here.on_main(
                save_checkpoint,
                folder / BEST,
                {**load_checkpoint(folder / BEST), "model": model.state_dict()},
            )
        row = {
            "stage": stage.name,
            "objective": stage.objective,
            "epochs_run": state.epoch,
            "epochs_max": stage.epochs,
            "best_epoch": 0 if kept_start else state.best_epoch,  # 0: the start was kept
            "train_seconds": state.train_seconds,
            "valid": best_valid,
        }
        if calibrated is not None:
            row.update(calibrated.chosen)
        here.on_main(atomic_write_json, done, row)
        rows.append(row)
    # The run's own best.pt is the last stage's best: `ur4rec evaluate RUN` uses it.
    last = stage_dir(run_dir, len(cfg.stages) - 1, cfg.stages[-1]) / BEST
    here.on_main(copy_checkpoint, last, run_dir / BEST)
    return rows


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in result.items() if "@" in k}


def stage_table(
    cfg: RunConfig,
    model: RecModel,
    dataset: Dataset,
    split: Split,
    rows: list[dict[str, Any]],
    run_dir: Path,
    protocols: tuple[str, ...] = ("full", SAMPLED_99),
) -> list[dict[str, Any]]:
    """Validation and test metrics of every stage's best checkpoint, one row per stage
    (stage, epochs run / max, Hit@10, NDCG@10, change against the previous stage)."""
    table = []
    for protocol in protocols:
        try:
            evaluators = {p: Evaluator(dataset, split, p, protocol) for p in ("valid", "test")}
        except Ur4recError:
            continue  # e.g. the 1+99 protocol on a catalogue too small for 99 negatives
        previous: dict[str, float] = {}
        for index, (stage, row) in enumerate(zip(cfg.stages, rows, strict=True)):
            load_state_into(model, stage_dir(run_dir, index, stage) / BEST)
            model.set_objective(stage.objective)
            model.eval()
            entry: dict[str, Any] = {
                "protocol": protocol,
                "stage": stage.name,
                "epochs": f"{row['epochs_run']}/{row['epochs_max']}"
                + (" (start kept)" if row.get("best_epoch") == 0 else ""),
            }
            for part, evaluator in evaluators.items():
                metrics = evaluator.evaluate(model)
                for key in ("hit@10", "ndcg@10"):
                    entry[f"{part} {key}"] = metrics[key]
                    if f"{part} {key}" in previous:
                        entry[f"{part} {key} change"] = metrics[key] - previous[f"{part} {key}"]
            previous = {k: v for k, v in entry.items() if k.endswith("@10")}
            table.append(entry)
    # Leave the model as the run ends: the last stage's best, its objective.
    load_state_into(model, run_dir / BEST)
    model.set_objective(cfg.stages[-1].objective)
    atomic_write_json(run_dir / "stages.json", table)
    atomic_write_text(run_dir / "stages.md", format_stage_table(table) + "\n")
    return table


def stage_rows(table: list[dict[str, Any]], protocol: str) -> list[dict[str, object]]:
    """The stage table's rows for one protocol as shown: each figure with its change."""
    rows: list[dict[str, object]] = []
    for r in (r for r in table if r["protocol"] == protocol):
        out: dict[str, object] = {"stage": r["stage"], "epochs": r["epochs"]}
        for part in ("valid", "test"):
            for key in ("hit@10", "ndcg@10"):
                change = r.get(f"{part} {key} change")
                value = r[f"{part} {key}"]
                out[f"{part} {key}"] = f"{value:.4f}" + (
                    f" ({change:+.4f})" if change is not None else ""
                )
        rows.append(out)
    return rows


def format_stage_table(table: list[dict[str, Any]], markdown: bool = False) -> str:
    blocks = []
    for protocol in dict.fromkeys(r["protocol"] for r in table):
        rows = stage_rows(table, protocol)
        title = f"Protocol `{protocol}`:\n\n" if markdown else f"protocol {protocol}:\n"
        blocks.append(title + format_table(rows, list(rows[0]), markdown))
    return "\n\n".join(blocks)
