"""A training run from a config to a run folder (runs/layout.py), resumable, and evaluation of
a finished one. A config with stages trains stage by stage (train/stages.py); one without
trains all of the model at once; a fitted model (popularity, EASE) is fitted and evaluated."""

from __future__ import annotations

import contextlib
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ur4rec.config import RunConfig, dump_config
from ur4rec.config import validate as validate_config
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.groups import GroupSpec
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.models import check_config, ranks_seen_items_last
from ur4rec.runs.checkpoint import save_checkpoint
from ur4rec.runs.layout import (
    BEST,
    CONFIG,
    INFO,
    INPUTS,
    LAST,
    LOG_FILE,
    REFIT_DIR,
    RUN_FILES,
    SUMMARY,
    load_state_into,
    resolve_checkpoint,
    write_run_info,
)
from ur4rec.runs.load import build, load_run, open_run, save_inputs
from ur4rec.train.distributed import world
from ur4rec.train.trainer import FitState, Trainer


def validate(cfg: RunConfig) -> None:
    """Every check a config can have before anything runs: its values, and its model and
    stages against the model registry."""
    validate_config(cfg)
    check_config(cfg)


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def train(
    cfg: RunConfig,
    run_dir: Path | None = None,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
    force: bool = False,
    test: bool = True,
) -> Path:
    """Train from scratch into a new run folder; returns the folder.

    The folder must be new, empty, or a run of this very config that never got as far as a
    checkpoint; ``force`` clears a previous run's files from it first (other files stay).
    ``test=False`` leaves the test split alone (a search chooses on validation only): the
    summary then has no test metrics and a staged run no stage table."""
    validate(cfg)
    here = world()
    run_dir = here.broadcast(Path(run_dir) if run_dir is not None else default_run_dir(cfg))
    if here.distributed and cfg.memory.enabled:
        raise Ur4recError("memory.enabled keeps per-window state; train it in one process")
    if here.main:
        _claim_folder(run_dir, cfg, force)
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    here.on_main(_start_folder, run_dir, cfg, dataset)
    return _guarded(run_dir, dataset, lambda: _run(
        cfg, dataset, run_dir, data_dir, quiet, on_epoch_end, resume=False, test=test
    ))  # fmt: skip


def _start_folder(run_dir: Path, cfg: RunConfig, dataset: Dataset) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / CONFIG, dump_config(cfg))
        (run_dir / LOG_FILE).unlink(missing_ok=True)
        (run_dir / INFO).unlink(missing_ok=True)  # a new start: new provenance
        write_run_info(run_dir, dataset, "running")
    except OSError as exc:
        raise Ur4recError(f"cannot write the run folder {run_dir}: {exc}") from None


def _claim_folder(run_dir: Path, cfg: RunConfig, force: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise Ur4recError(f"--out {run_dir} is a file, not a folder")
    if not run_dir.is_dir():
        return
    if force:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "stages", ignore_errors=True)
        shutil.rmtree(run_dir / REFIT_DIR, ignore_errors=True)
        return
    present = sorted(p.name for p in run_dir.iterdir())
    if not present:
        return
    if (run_dir / LAST).exists() or (run_dir / "stages").exists():
        raise Ur4recError(
            f"{run_dir} already holds a run; resume it with --resume, pick another --out, or "
            "pass --force to start it over"
        )
    same = (run_dir / CONFIG).is_file() and (run_dir / CONFIG).read_text(
        encoding="utf-8"
    ) == dump_config(cfg)
    if not (same and set(present) <= set(RUN_FILES)):
        shown = ", ".join(present[:5]) + (", ..." if len(present) > 5 else "")
        raise Ur4recError(
            f"--out {run_dir} is not empty and is not a run of this config (it holds {shown}); "
            "pick another folder, or pass --force to overwrite its run files"
        )


def _guarded(run_dir: Path, dataset: Dataset, work: Callable[[], Path]) -> Path:
    """Run ``work``; if it fails, run.json says so (status failed or interrupted)."""
    try:
        return work()
    except BaseException as exc:
        status = getattr(exc, "run_status", None) or (  # e.g. "pruned" by a search
            "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        )
        with contextlib.suppress(OSError):  # the original error says more than this one
            if world().main:
                error = str(exc)[:500] or type(exc).__name__
                write_run_info(run_dir, dataset, status, error=error)
        if isinstance(exc, OSError):
            raise Ur4recError(f"run {run_dir} failed: {exc}") from exc
        raise


def resume(
    run_dir: Path,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
    test: bool = True,
) -> Path:
    """Continue a run from where it stopped; a finished run is left as it is. A run killed
    before its first checkpoint starts again from the beginning."""
    run_dir = Path(run_dir)
    cfg, dataset = open_run(run_dir, data_dir)
    world().on_main(write_run_info, run_dir, dataset, "running")
    return _guarded(run_dir, dataset, lambda: _run(
        cfg, dataset, run_dir, data_dir, quiet, on_epoch_end, resume=True, test=test
    ))  # fmt: skip


def _run(
    cfg: RunConfig,
    dataset: Dataset,
    run_dir: Path,
    data_dir: str | None,
    quiet: bool,
    on_epoch_end: Callable[[FitState], None] | None,
    resume: bool,
    test: bool = True,
) -> Path:
    here = world()
    model, split, windows = build(cfg, dataset, data_dir)
    # Rank 0's answer for every rank: a rank that looked after rank 0 had written the file
    # would skip the barrier below, and the ranks' collectives would no longer pair up.
    if here.broadcast(not (run_dir / INPUTS).is_file()):
        here.on_main(save_inputs, run_dir, model)
    summary: dict[str, Any]
    if cfg.stages:
        from ur4rec.train.stages import format_stage_table, run_stages, stage_table

        rows = run_stages(cfg, model, dataset, split, windows, run_dir, quiet, on_epoch_end)
        if not here.main:  # rank 0 alone tabulates, tests and writes the summary
            here.barrier()
            return run_dir
        if test:
            table = stage_table(cfg, model, dataset, split, rows, run_dir)
            if not quiet:
                print(format_stage_table(table))
        summary = {
            "stages": rows,
            "valid": rows[-1]["valid"],
            "epochs_run": sum(r["epochs_run"] for r in rows),
            "stopped_early": False,
            "best_epoch": rows[-1]["best_epoch"],
            "train_seconds": round(sum(r["train_seconds"] for r in rows), 2),
        }
    elif not model.trainable:  # fitted when built
        if here.distributed:
            raise Ur4recError(f"model {cfg.model.name!r} is fitted, not trained: use one process")
        model.eval()
        valid = Evaluator(dataset, split, "valid", cfg.train.eval_protocol).evaluate(model)
        save_checkpoint(run_dir / BEST, {"model": model.state_dict(), "epoch": 0})
        summary = {
            "best_epoch": 0,
            "epochs_run": 0,
            "stopped_early": False,
            "metric": cfg.train.metric,
            "valid": {k: v for k, v in valid.items() if "@" in k},
            "train_seconds": 0.0,
        }
    else:
        evaluator = Evaluator(dataset, split, "valid", cfg.train.eval_protocol)
        trainer = Trainer(
            model, windows, evaluator, cfg.train, run_dir, cfg.seed, quiet=quiet,
            on_epoch_end=on_epoch_end,
        )  # fmt: skip
        if resume and (run_dir / LAST).is_file():
            trainer.resume()
        elif resume:  # killed before the first epoch ended: nothing to continue from
            (run_dir / LOG_FILE).unlink(missing_ok=True)
        state = trainer.fit()
        if state.best_epoch < 0:
            raise Ur4recError("training ended without a validation pass; check train.eval_every")
        if not here.main:
            here.barrier()
            return run_dir
        load_state_into(model, run_dir / BEST)
        summary = {
            "best_epoch": state.best_epoch,
            "epochs_run": state.epoch,
            "stopped_early": state.stopped_early,
            "metric": cfg.train.metric,
            "valid": state.best_valid(),
            "train_seconds": state.train_seconds,
        }
    model.eval()
    if test:
        summary["test"] = Evaluator(dataset, split, "test", cfg.train.eval_protocol).evaluate(model)
    atomic_write_json(run_dir / SUMMARY, summary)
    write_run_info(run_dir, dataset, "finished")
    here.barrier()  # the others wait for the summary
    if test and cfg.train.refit:
        if here.distributed:  # a refit trains in one process
            here.on_main(print, f"train.refit: run `ur4rec refit {run_dir}` after torchrun")
        else:
            from ur4rec.train.refit import refit

            refit(run_dir, data_dir=data_dir, quiet=quiet)
    return run_dir


def evaluate(
    run_dir: Path,
    protocol: str = "full",
    part: str = "test",
    *,
    data_dir: str | None = None,
    checkpoint: str = "final",
    ks: tuple[int, ...] | None = None,
    groups: GroupSpec | None = None,
    seen_items: str | None = None,
) -> dict[str, Any]:
    """A run's metrics on ``part`` under ``protocol``; ``seen_items`` overrides the run's
    ``model.seen_items`` (auto, last or keep). ``checkpoint``: runs/layout.resolve_checkpoint
    (``final``: a refit model on test where the run has one, the best checkpoint otherwise)."""
    cfg, dataset, model = load_run(run_dir, data_dir, checkpoint, part)
    split = make_split(dataset, cfg.data.scheme)
    if seen_items is not None:
        model.seen_items_last = ranks_seen_items_last(seen_items, dataset, split.train)
    evaluator = Evaluator(
        dataset, split, part, protocol, groups=groups, **({"ks": ks} if ks else {})
    )
    return {"model": cfg.model.name, "run": str(run_dir), **evaluator.evaluate(model)}


def user_ranks(
    run_dir: Path,
    cases: list[tuple[str, str]],
    *,
    data_dir: str | None = None,
    checkpoint: str = "final",
) -> dict[str, np.ndarray]:
    """Each evaluated user's 0-based target rank for each (part, protocol) case, keyed
    "part protocol", e.g. "test full": the input of paired comparisons (eval/compare.py).
    Each part is scored by the checkpoint ``checkpoint`` means for it (resolve_checkpoint)."""
    names = {part: resolve_checkpoint(run_dir, checkpoint, part) for part, _ in cases}
    out: dict[str, np.ndarray] = {}
    for name in dict.fromkeys(names.values()):
        cfg, dataset, model = load_run(run_dir, data_dir, name)
        split = make_split(dataset, cfg.data.scheme)
        for part, protocol in cases:
            if names[part] == name:
                ranks = Evaluator(dataset, split, part, protocol).ranks(model)
                out[f"{part} {protocol}"] = ranks.numpy()
    return {f"{part} {protocol}": out[f"{part} {protocol}"] for part, protocol in cases}
