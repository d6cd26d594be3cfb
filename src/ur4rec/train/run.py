"""A training run from a config to a run folder, resumable, and evaluation of a finished one.

Run folder: ``config.yaml`` (resolved), ``run.json`` (data hash, sizes, status), ``log.jsonl``
(one row per epoch), ``best.pt`` and ``last.pt``, ``summary.json`` once finished.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ur4rec import __version__
from ur4rec.config import LossConfig, RunConfig, dump_config, load_config, validate
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import Split, interaction_counts, make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.models import build_model
from ur4rec.models.sasrec import NegativeSampler, SASRec
from ur4rec.train.trainer import (
    BEST,
    LAST,
    LOG_FILE,
    FitState,
    LossFn,
    Trainer,
    load_state_into,
)
from ur4rec.train.windows import TrainWindows


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def sasrec_loss(model: SASRec, loss: LossConfig, sampler: NegativeSampler) -> LossFn:
    def loss_fn(users, windows, inputs, targets, generator):
        return model.training_loss(inputs, targets, loss, sampler, generator)

    return loss_fn


def build(
    cfg: RunConfig, dataset: Dataset, data_dir: str | None = None
) -> tuple[torch.nn.Module, Split, TrainWindows]:
    """The model (freshly initialised from the seed), the split and the training windows."""
    split = make_split(dataset, cfg.data.scheme)
    windows = TrainWindows(dataset, split.train, cfg.data.max_len)
    texts = None
    if cfg.model.name == "ur4rec":
        from ur4rec.train.features import text_features

        texts = text_features(cfg, dataset, data_dir)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dataset, texts, len(windows), split.train)
    memory = getattr(model, "memory", None)
    if memory is not None:
        memory.bind(windows.later, windows.last_window)
    if texts is not None and texts.snapshots is not None:
        from ur4rec.text.corpus import snapshot_rows

        rows = snapshot_rows(
            windows.users.numpy(),
            windows.positions[:, 1:].numpy(),
            texts.snapshot_first_row,
            cfg.text.user_text_every,
        )
        model.set_training_user_texts(texts.snapshots, torch.from_numpy(rows))
    return model, split, windows


def _sasrec_trainer(
    cfg: RunConfig,
    dataset: Dataset,
    model: torch.nn.Module,
    split: Split,
    windows: TrainWindows,
    run_dir: Path,
    quiet: bool,
    on_epoch_end: Callable[[FitState], None] | None,
) -> Trainer:
    popularity = None
    if cfg.loss.sampler == "popularity":
        popularity = torch.from_numpy(interaction_counts(dataset, split.train))
    sampler = NegativeSampler(dataset.n_items, popularity)
    return Trainer(
        model=model,
        windows=windows,
        evaluator=Evaluator(dataset, split, "valid", cfg.train.eval_protocol),
        train=cfg.train,
        loss_fn=sasrec_loss(model, cfg.loss, sampler),
        run_dir=run_dir,
        seed=cfg.seed,
        quiet=quiet,
        on_epoch_end=on_epoch_end,
    )


# What a run writes into its folder; `--force` removes these and nothing else.
RUN_FILES = (
    "config.yaml", "run.json", LOG_FILE, BEST, LAST, f"{BEST}.sha256", f"{LAST}.sha256",
    "summary.json", "stages.json", "stages.md", "REPORT.md", "curves.png", "stages.png",
)  # fmt: skip


def train(
    cfg: RunConfig,
    run_dir: Path | None = None,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
    force: bool = False,
) -> Path:
    """Train from scratch into a new run folder; returns the folder.

    The folder must be new, empty, or a run of this very config that never got as far as a
    checkpoint; ``force`` clears a previous run's files from it first (other files stay)."""
    validate(cfg)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    _claim_folder(run_dir, cfg, force)
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
        (run_dir / LOG_FILE).unlink(missing_ok=True)
        _write_run_info(run_dir, dataset, "running")
    except OSError as exc:
        raise Ur4recError(f"cannot write the run folder {run_dir}: {exc}") from None
    return _guarded(run_dir, dataset, lambda: _run(
        cfg, dataset, run_dir, data_dir, quiet, on_epoch_end, resume=False
    ))  # fmt: skip


def _claim_folder(run_dir: Path, cfg: RunConfig, force: bool) -> None:
    if run_dir.exists() and not run_dir.is_dir():
        raise Ur4recError(f"--out {run_dir} is a file, not a folder")
    if not run_dir.is_dir():
        return
    if force:
        for name in RUN_FILES:
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "stages", ignore_errors=True)
        return
    present = sorted(p.name for p in run_dir.iterdir())
    if not present:
        return
    if (run_dir / LAST).exists() or (run_dir / "stages").exists():
        raise Ur4recError(
            f"{run_dir} already holds a run; resume it with --resume, pick another --out, or "
            "pass --force to start it over"
        )
    same = (run_dir / "config.yaml").is_file() and (run_dir / "config.yaml").read_text(
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
        status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        with contextlib.suppress(OSError):  # the original error says more than this one
            _write_run_info(run_dir, dataset, status, error=str(exc)[:500] or type(exc).__name__)
        if isinstance(exc, OSError):
            raise Ur4recError(f"run {run_dir} failed: {exc}") from exc
        raise


def resume(
    run_dir: Path,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
) -> Path:
    """Continue a run from where it stopped; a finished run is left as it is. A run killed
    before its first checkpoint starts again from the beginning."""
    run_dir = Path(run_dir)
    cfg, dataset = _open_run(run_dir, data_dir)
    _write_run_info(run_dir, dataset, "running")
    return _guarded(run_dir, dataset, lambda: _run(
        cfg, dataset, run_dir, data_dir, quiet, on_epoch_end, resume=True
    ))  # fmt: skip


def _run(
    cfg: RunConfig,
    dataset: Dataset,
    run_dir: Path,
    data_dir: str | None,
    quiet: bool,
    on_epoch_end: Callable[[FitState], None] | None,
    resume: bool,
) -> Path:
    model, split, windows = build(cfg, dataset, data_dir)
    summary: dict[str, Any]
    if cfg.model.name == "ur4rec":
        from ur4rec.train.stages import format_stage_table, run_stages, stage_table

        rows = run_stages(cfg, model, dataset, split, windows, run_dir, quiet, on_epoch_end)
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
    else:
        trainer = _sasrec_trainer(cfg, dataset, model, split, windows, run_dir, quiet, on_epoch_end)
        if resume and (run_dir / LAST).is_file():
            trainer.resume()
        elif resume:  # killed before the first epoch ended: nothing to continue from
            (run_dir / LOG_FILE).unlink(missing_ok=True)
        state = trainer.fit()
        if state.best_epoch < 0:
            raise Ur4recError("training ended without a validation pass; check train.eval_every")
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
    summary["test"] = Evaluator(dataset, split, "test", cfg.train.eval_protocol).evaluate(model)
    atomic_write_json(run_dir / "summary.json", summary)
    _write_run_info(run_dir, dataset, "finished")
    return run_dir


def _write_run_info(run_dir: Path, dataset: Dataset, status: str, error: str | None = None) -> None:
    info = {
        "dataset": dataset.name,
        "data_hash": dataset.content_hash,
        "n_users": dataset.n_users,
        "n_items": dataset.n_items,
        "ur4rec_version": __version__,
        "status": status,
        "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if error is not None:
        info["error"] = error
    atomic_write_json(run_dir / "run.json", info)


def _open_run(run_dir: Path, data_dir: str | None) -> tuple[RunConfig, Dataset]:
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "run.json").is_file():
        raise Ur4recError(f"{run_dir} is not a run folder (no config.yaml / run.json)")
    cfg = load_config(run_dir / "config.yaml")
    try:
        info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
        if not {"data_hash", "dataset"} <= set(info):
            raise KeyError("data_hash or dataset")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise Ur4recError(f"{run_dir / 'run.json'} is unreadable or incomplete ({exc})") from None
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    if dataset.content_hash != info["data_hash"]:
        raise Ur4recError(
            f"{run_dir} was trained on {info['dataset']} with content hash "
            f"{info['data_hash'][:12]}, but the prepared data now has {dataset.content_hash[:12]}"
        )
    return cfg, dataset


def load_run(
    run_dir: Path, data_dir: str | None = None, checkpoint: str = "best"
) -> tuple[RunConfig, Dataset, torch.nn.Module]:
    """The run's config, dataset and model with the chosen checkpoint's weights, in eval mode."""
    run_dir = Path(run_dir)
    cfg, dataset = _open_run(run_dir, data_dir)
    model, _, _ = build(cfg, dataset, data_dir)
    load_state_into(model, run_dir / (BEST if checkpoint == "best" else LAST))
    if cfg.model.name == "ur4rec":
        model.objective = cfg.stages[-1].objective
    return cfg, dataset, model.eval()


def evaluate(
    run_dir: Path,
    protocol: str = "full",
    part: str = "test",
    *,
    data_dir: str | None = None,
    checkpoint: str = "best",
    ks: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir, checkpoint)
    split = make_split(dataset, cfg.data.scheme)
    evaluator = Evaluator(dataset, split, part, protocol, **({"ks": ks} if ks else {}))
    return {"model": cfg.model.name, "run": str(run_dir), **evaluator.evaluate(model)}


def user_ranks(
    run_dir: Path,
    cases: list[tuple[str, str]],
    *,
    data_dir: str | None = None,
    checkpoint: str = "best",
) -> dict[str, np.ndarray]:
    """Each evaluated user's 0-based target rank for each (part, protocol) case, keyed
    "part protocol", e.g. "test full": the input of paired comparisons (eval/compare.py)."""
    cfg, dataset, model = load_run(run_dir, data_dir, checkpoint)
    split = make_split(dataset, cfg.data.scheme)
    return {
        f"{part} {protocol}": Evaluator(dataset, split, part, protocol).ranks(model).numpy()
        for part, protocol in cases
    }
