"""Multi-stage training of UR4Rec (default: the report's four stages).

Each stage names the modules that learn (the others are frozen), their learning rates and
clipping norms, its epochs, patience and validation metric, and its objective (what is trained
and scored: ``sasrec``, ``retriever`` or ``fused``). The best checkpoint of a stage starts the
next; a stage none of whose epochs beats its start on validation hands its start on. Stages
live in ``RUN/stages/<i>-<name>/``; a finished stage leaves ``done.json``, so a resumed run
skips it and continues the stage in progress from its ``last.pt``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from ur4rec.config import RunConfig, StageConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import Split
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator, HistoryBatch
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.models.ur4rec import MODULES, OBJECTIVES, UR4Rec
from ur4rec.report_table import format_table
from ur4rec.train.checkpoint import copy_checkpoint, load_checkpoint, save_checkpoint
from ur4rec.train.trainer import BEST, FitState, ParamGroup, Trainer, load_state_into
from ur4rec.train.windows import TrainWindows


def stage_dir(run_dir: Path, index: int, stage: StageConfig) -> Path:
    return run_dir / "stages" / f"{index + 1}-{stage.name}"


def configure(model: UR4Rec, stage: StageConfig, cfg: RunConfig) -> list[ParamGroup]:
    """Freeze every module the stage does not train; one parameter group per trained one."""
    unknown = [m for m in stage.train if m not in MODULES]
    if unknown:
        raise Ur4recError(f"stage {stage.name!r}: unknown module {unknown[0]!r}; known: {MODULES}")
    if stage.objective not in OBJECTIVES:
        raise Ur4recError(f"stage {stage.name!r}: unknown objective {stage.objective!r}")
    params = model.module_parameters()
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
    model.objective = stage.objective
    model.write_memory = "memory" in stage.train
    return groups


def run_stages(
    cfg: RunConfig,
    model: UR4Rec,
    dataset: Dataset,
    split: Split,
    windows: TrainWindows,
    run_dir: Path,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every stage in turn; returns one row per stage (validation metrics)."""
    valid = Evaluator(dataset, split, "valid", cfg.train.eval_protocol)
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
            model, windows, valid, train_cfg, model.training_loss, folder,
            seed=cfg.seed * 100 + index, groups=groups, quiet=quiet, on_epoch_end=on_epoch_end,
        )  # fmt: skip
        if (folder / "last.pt").is_file():
            trainer.resume()
        if not quiet:
            print(f"stage {index + 1}/{len(cfg.stages)}: {stage.name} ({stage.objective})")
        state = trainer.fit()
        if state.best_epoch < 0:
            raise Ur4recError(f"stage {stage.name!r} ended without a validation pass")
        load_state_into(model, folder / BEST)
        calibrated = None
        calibrates = (
            stage.objective == "fused"
            and cfg.fusion.calibrate
            and cfg.fusion.method in ("fixed", "scalar")
        )
        # A retriever no stage so far has trained is noise: it gets no weight.
        trained = any("retriever" in s.train for s in cfg.stages[: index + 1])
        if calibrates:
            calibrated = calibrate_fusion(model, valid, stage.metric, retriever=trained)
        best_valid = calibrated[2] if calibrated is not None else state.best_valid()
        kept_start = False
        if index > 0:
            # Early stopping that counts the start as epoch 0: when no epoch beats the
            # stage's start (the previous stage's best, scored the same way), hand that on.
            load_state_into(model, stage_dir(run_dir, index - 1, cfg.stages[index - 1]) / BEST)
            model.objective = stage.objective
            if calibrates:
                start = calibrate_fusion(model, valid, stage.metric, retriever=trained)
            else:
                model.eval()
                start = (None, None, _metrics(valid.evaluate(model)))
            kept_start = start[2][stage.metric] > best_valid[stage.metric]
            if kept_start:
                calibrated = start if calibrates else None
                best_valid = start[2]
            else:
                load_state_into(model, folder / BEST)
                if calibrated is not None:
                    _set_fusion_weights(model, calibrated[0], calibrated[1])
        if calibrates or kept_start:
            save_checkpoint(
                folder / BEST, {**load_checkpoint(folder / BEST), "model": model.state_dict()}
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
            row["sasrec_weight"], prior_weight, _ = calibrated
            if prior_weight is not None:
                row["prior_weight"] = prior_weight
        atomic_write_json(done, row)
        rows.append(row)
    # The run's own best.pt is the last stage's best: `ur4rec evaluate RUN` uses it.
    last = stage_dir(run_dir, len(cfg.stages) - 1, cfg.stages[-1]) / BEST
    copy_checkpoint(last, run_dir / BEST)
    return rows


def _set_fusion_weights(model: UR4Rec, weight: float, prior: float | None) -> None:
    model.fusion.set_weight(weight)
    if prior is not None:
        model.fusion.set_prior_weight(prior)


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in result.items() if "@" in k}


PRIOR_GRID = tuple(step / 10 for step in range(11))  # the EASE prior's weight: 0, 0.1, .., 1


class _ReplayedBranches:
    """Replays the branch scores of each validation batch, in the evaluator's order, so that
    only the fusion weights change between calibration points."""

    def __init__(self, model: UR4Rec, cached: list[dict[str, torch.Tensor]]) -> None:
        self.model, self.cached, self.batch = model, cached, 0

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        out = dict(self.cached[self.batch])
        self.batch += 1
        return self.model.combine(out)


def calibrate_fusion(
    model: UR4Rec, valid: Evaluator, metric: str, retriever: bool = True
) -> tuple[float, float | None, dict[str, float]]:
    """Choose SASRec's fusion weight (grid 0, 0.05, .., 1; 1 alone without ``retriever``) and,
    with an EASE prior, the prior's weight (PRIOR_GRID) on the validation split; returns
    (weight, prior weight, metrics)."""
    model.eval()
    model.objective = "fused"
    with torch.inference_mode():
        cached = [model.branch_scores(batch) for _, batch in valid.batches()]
    priors: tuple[float | None, ...] = PRIOR_GRID if model.prior is not None else (None,)
    best: tuple[float, float | None, float, dict[str, float]] | None = None
    for weight in [step / 20 for step in range(21)] if retriever else [1.0]:
        for prior in priors:
            _set_fusion_weights(model, weight, prior)
            metrics = _metrics(valid.evaluate(_ReplayedBranches(model, cached)))
            if best is None or metrics[metric] > best[2]:
                best = (weight, prior, metrics[metric], metrics)
    assert best is not None
    _set_fusion_weights(model, best[0], best[1])
    return best[0], best[1], best[3]


def stage_table(
    cfg: RunConfig,
    model: UR4Rec,
    dataset: Dataset,
    split: Split,
    rows: list[dict[str, Any]],
    run_dir: Path,
    protocols: tuple[str, ...] = ("full", "seed"),
) -> list[dict[str, Any]]:
    """Validation and test metrics of every stage's best checkpoint, in the report's shape
    (stage, epochs run / max, Hit@10, NDCG@10, change against the previous stage)."""
    table = []
    for protocol in protocols:
        try:
            evaluators = {p: Evaluator(dataset, split, p, protocol) for p in ("valid", "test")}
        except Ur4recError:
            continue  # e.g. 'seed' on a catalogue too small for 99 negatives
        previous: dict[str, float] = {}
        for index, (stage, row) in enumerate(zip(cfg.stages, rows, strict=True)):
            load_state_into(model, stage_dir(run_dir, index, stage) / BEST)
            model.objective = stage.objective
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
    model.objective = cfg.stages[-1].objective
    atomic_write_json(run_dir / "stages.json", table)
    atomic_write_text(run_dir / "stages.md", format_stage_table(table) + "\n")
    return table


def format_stage_table(table: list[dict[str, Any]]) -> str:
    blocks = []
    for protocol in dict.fromkeys(r["protocol"] for r in table):
        rows = []
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
        blocks.append(f"protocol {protocol}:\n" + format_table(rows, list(rows[0])))
    return "\n\n".join(blocks)
