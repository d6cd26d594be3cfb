"""Building a run's model from its config, and loading a finished run for inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ur4rec.config import RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import Split, make_split, with_validation_targets
from ur4rec.data.windows import TrainWindows
from ur4rec.models import ModelInputs, RecModel, build_model, model_class
from ur4rec.runs.checkpoint import load_checkpoint, save_checkpoint
from ur4rec.runs.layout import (
    INPUTS,
    REFIT_DIR,
    check_data,
    checkpoint_path,
    load_state_into,
    read_run_info,
    resolve_checkpoint,
)


def build(
    cfg: RunConfig,
    dataset: Dataset,
    data_dir: str | None = None,
    saved: dict[str, Any] | None = None,
    refit: bool = False,
) -> tuple[RecModel, Split, TrainWindows]:
    """The model (freshly initialised from the seed), the split and the training windows.
    ``saved``: a run's saved inputs (``read_inputs``), instead of texts and fitting.
    ``refit``: the model and windows of a refit, whose training part also holds the
    validation targets (with_validation_targets); the split returned is the run's own."""
    split = make_split(dataset, cfg.data.scheme)
    train = with_validation_targets(dataset, split) if refit else split.train
    windows = TrainWindows(dataset, train, cfg.data.max_len)
    texts = None
    if model_class(cfg.model.name).uses_text and saved is None:
        from ur4rec.text.features import text_features

        texts = text_features(cfg, dataset, data_dir)
    torch.manual_seed(cfg.seed)
    model = build_model(ModelInputs(cfg, dataset, train, windows, texts, saved))
    return model, split, windows


def save_inputs(run_dir: Path, model: RecModel) -> None:
    """Keep what the model was built from besides its weights (``inference_inputs``)."""
    save_checkpoint(Path(run_dir) / INPUTS, {"inputs": model.inference_inputs()})


def read_inputs(run_dir: Path) -> dict[str, Any] | None:
    """A run's saved inputs, verified against their digest; None for a run made before runs
    kept them (it is rebuilt from its texts and data)."""
    path = Path(run_dir) / INPUTS
    return load_checkpoint(path, "inputs")["inputs"] if path.is_file() else None


def open_run(run_dir: Path, data_dir: str | None = None) -> tuple[RunConfig, Dataset]:
    """The run's config and its dataset, checked to be the data it was trained on."""
    cfg, info = read_run_info(run_dir)
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    check_data(run_dir, info, dataset)
    return cfg, dataset


def load_run(
    run_dir: Path, data_dir: str | None = None, checkpoint: str = "final", part: str = "test"
) -> tuple[RunConfig, Dataset, RecModel]:
    """The run's config, dataset and model with the chosen checkpoint's weights (for scoring
    ``part``: resolve_checkpoint), in eval mode, scoring as the run's last stage did."""
    run_dir = Path(run_dir)
    cfg, dataset = open_run(run_dir, data_dir)
    name = resolve_checkpoint(run_dir, checkpoint, part)
    refit = name == "refit"
    saved = read_inputs(run_dir / REFIT_DIR if refit else run_dir)
    model, _, _ = build(cfg, dataset, data_dir, saved, refit=refit)
    load_state_into(model, checkpoint_path(run_dir, name))
    if cfg.stages and (run_dir / "stages").is_dir():  # staged: score as the last stage did
        model.set_objective(cfg.stages[-1].objective)
    return cfg, dataset, model.eval()
