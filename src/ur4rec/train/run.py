"""A training run from a config to a run folder, resumable, and evaluation of a finished one.

Run folder: ``config.yaml`` (resolved), ``run.json`` (data hash, sizes, status), ``log.jsonl``
(one row per epoch), ``best.pt`` and ``last.pt``, ``summary.json`` once finished.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ur4rec import __version__
from ur4rec.config import RunConfig, dump_config, load_config
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import interaction_counts, make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json, atomic_write_text
from ur4rec.models import build_model
from ur4rec.models.sasrec import NegativeSampler
from ur4rec.train.trainer import BEST, LAST, FitState, Trainer, load_state_into
from ur4rec.train.windows import TrainWindows


def default_run_dir(cfg: RunConfig) -> Path:
    return Path("runs") / f"{cfg.data.dataset}-{cfg.model.name}-{time.strftime('%Y%m%d-%H%M%S')}"


def _trainer(
    cfg: RunConfig,
    dataset: Dataset,
    run_dir: Path,
    quiet: bool,
    on_epoch_end: Callable[[FitState], None] | None,
) -> Trainer:
    split = make_split(dataset, cfg.data.scheme)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dataset)
    popularity = None
    if cfg.loss.sampler == "popularity":
        popularity = torch.from_numpy(interaction_counts(dataset, split.train))
    return Trainer(
        model=model,
        windows=TrainWindows(dataset, split.train, cfg.data.max_len),
        evaluator=Evaluator(dataset, split, "valid", cfg.train.eval_protocol),
        train=cfg.train,
        loss=cfg.loss,
        sampler=NegativeSampler(dataset.n_items, popularity),
        run_dir=run_dir,
        seed=cfg.seed,
        quiet=quiet,
        on_epoch_end=on_epoch_end,
    )


def train(
    cfg: RunConfig,
    run_dir: Path | None = None,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
) -> Path:
    """Train from scratch into a new run folder; returns the folder."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    if (run_dir / LAST).exists():
        raise Ur4recError(f"{run_dir} already holds a run; resume it with --resume or pick --out")
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / "config.yaml", dump_config(cfg))
    _write_run_info(run_dir, dataset, "running")
    trainer = _trainer(cfg, dataset, run_dir, quiet, on_epoch_end)
    return _finish(trainer, cfg, dataset, run_dir)


def resume(
    run_dir: Path,
    *,
    data_dir: str | None = None,
    quiet: bool = False,
    on_epoch_end: Callable[[FitState], None] | None = None,
) -> Path:
    """Continue a run from its ``last.pt``; a finished run is left as it is."""
    run_dir = Path(run_dir)
    cfg, dataset = _open_run(run_dir, data_dir)
    trainer = _trainer(cfg, dataset, run_dir, quiet, on_epoch_end)
    trainer.resume()
    return _finish(trainer, cfg, dataset, run_dir)


def _finish(trainer: Trainer, cfg: RunConfig, dataset: Dataset, run_dir: Path) -> Path:
    state = trainer.fit()
    if state.best_epoch < 0:
        raise Ur4recError("training ended without a validation pass; check train.eval_every")
    load_state_into(trainer.model, run_dir / BEST)
    trainer.model.eval()
    test = Evaluator(dataset, trainer.evaluator.split, "test", cfg.train.eval_protocol)
    best_row = next(r for r in state.history if r["epoch"] == state.best_epoch)
    summary = {
        "best_epoch": state.best_epoch,
        "epochs_run": state.epoch,
        "stopped_early": state.stopped_early,
        "metric": cfg.train.metric,
        "valid": {k.split("/", 1)[1]: v for k, v in best_row.items() if k.startswith("valid/")},
        "test": test.evaluate(trainer.model),
        "train_seconds": round(sum(r["train_seconds"] for r in state.history), 2),
    }
    atomic_write_json(run_dir / "summary.json", summary)
    _write_run_info(run_dir, dataset, "finished")
    return run_dir


def _write_run_info(run_dir: Path, dataset: Dataset, status: str) -> None:
    atomic_write_json(
        run_dir / "run.json",
        {
            "dataset": dataset.name,
            "data_hash": dataset.content_hash,
            "n_users": dataset.n_users,
            "n_items": dataset.n_items,
            "ur4rec_version": __version__,
            "status": status,
            "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )


def _open_run(run_dir: Path, data_dir: str | None) -> tuple[RunConfig, Dataset]:
    if not (run_dir / "config.yaml").is_file() or not (run_dir / "run.json").is_file():
        raise Ur4recError(f"{run_dir} is not a run folder (no config.yaml / run.json)")
    cfg = load_config(run_dir / "config.yaml")
    info = json.loads((run_dir / "run.json").read_text(encoding="utf-8"))
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
    model = build_model(cfg, dataset)
    load_state_into(model, run_dir / (BEST if checkpoint == "best" else LAST))
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
