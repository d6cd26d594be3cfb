"""The training engine: AdamW, warmup + cosine schedule, per-group gradient clipping, early
stopping on a validation metric, best/last checkpoints, exact resume.

Exact resume without saving RNG state: every epoch reseeds the global generator (dropout) and
its own data generator (order, negatives) from (seed, epoch), so epoch k draws the same
numbers whether or not the run was restarted before it.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from ur4rec.config import TrainConfig
from ur4rec.data.windows import TrainWindows
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_text
from ur4rec.models.base import RecModel
from ur4rec.runs.checkpoint import save_checkpoint
from ur4rec.runs.layout import BEST, LAST, LOG_FILE, append_log, load_state_into, read_log


@dataclass
class ParamGroup:
    """Parameters that share a learning rate and a gradient-clipping norm."""

    name: str
    params: list[nn.Parameter]
    lr: float
    clip_norm: float = 1.0
    weight_decay: float = 0.0


@dataclass
class FitState:
    epoch: int = 0  # epochs completed
    step: int = 0
    best_metric: float = -math.inf
    best_epoch: int = -1
    bad_epochs: int = 0
    stopped_early: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)

    def best_valid(self) -> dict[str, float]:
        """Validation metrics of the best epoch, keys like ``ndcg@10``."""
        row = next(r for r in self.history if r["epoch"] == self.best_epoch)
        return {k.split("/", 1)[1]: v for k, v in row.items() if k.startswith("valid/")}

    @property
    def train_seconds(self) -> float:
        return round(sum(r["train_seconds"] for r in self.history), 2)


def epoch_seed(seed: int, epoch: int, stream: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919 + stream) % (2**63 - 1)


def progress_disabled(quiet: bool) -> bool:
    return quiet or os.environ.get("CI", "").lower() in ("1", "true") or not sys.stderr.isatty()


class Trainer:
    def __init__(
        self,
        model: RecModel,
        windows: TrainWindows,
        evaluator: Evaluator,
        train: TrainConfig,
        run_dir: Path,
        seed: int,
        groups: list[ParamGroup] | None = None,
        quiet: bool = False,
        on_epoch_end: Callable[[FitState], None] | None = None,
    ) -> None:
        self.model = model
        self.windows = windows
        self.evaluator = evaluator
        self.cfg = train
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.quiet = quiet
        self.on_epoch_end = on_epoch_end
        if groups is None:
            params = [p for p in model.parameters() if p.requires_grad]
            groups = [ParamGroup("model", params, train.lr, train.clip_norm, train.weight_decay)]
        self.groups = [g for g in groups if g.params]
        self.optimizer = torch.optim.AdamW(
            [
                {"params": g.params, "lr": g.lr, "weight_decay": g.weight_decay, "name": g.name}
                for g in self.groups
            ]
        )
        self.steps_per_epoch = max(1, math.ceil(len(windows) / train.batch_size))
        total = train.epochs * self.steps_per_epoch
        warmup = int(train.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, warmup, total, train.schedule)
        )
        self.state = FitState()
        self.tensorboard = _tensorboard(self.run_dir) if train.tensorboard else None
        if train.metric not in _metric_names(evaluator):
            raise Ur4recError(
                f"train.metric {train.metric!r} is not one of {_metric_names(evaluator)}"
            )

    # -- checkpoints -------------------------------------------------------------------
    def save_last(self) -> None:
        s = self.state
        save_checkpoint(
            self.run_dir / LAST,
            {
                "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
                "state": {
                    "epoch": s.epoch,
                    "step": s.step,
                    "best_metric": s.best_metric,
                    "best_epoch": s.best_epoch,
                    "bad_epochs": s.bad_epochs,
                    "stopped_early": s.stopped_early,
                },
            },
        )

    def resume(self) -> None:
        """Continue from ``last.pt``; log rows written after it are dropped."""
        payload = load_state_into(self.model, self.run_dir / LAST)
        self.optimizer.load_state_dict(payload["optimizer"])
        self.scheduler.load_state_dict(payload["scheduler"])
        self.state = FitState(**payload["state"])
        log = self.run_dir / LOG_FILE
        rows = read_log(log)
        kept = [r for r in rows if r["epoch"] <= self.state.epoch]
        self.state.history = kept
        atomic_write_text(log, "".join(json.dumps(r) + "\n" for r in kept))

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> FitState:
        cfg, state = self.cfg, self.state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        disabled = progress_disabled(self.quiet)
        epochs = tqdm(
            range(state.epoch, cfg.epochs), desc="epochs", initial=state.epoch,
            total=cfg.epochs, disable=disabled, leave=False,
        )  # fmt: skip
        for epoch in epochs:
            if state.stopped_early:
                break
            row = self._train_epoch(epoch, disabled)
            evaluate = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            if evaluate:
                row.update(self._validate())
            state.epoch = epoch + 1
            state.history.append(row)
            append_log(self.run_dir / LOG_FILE, row)
            if self.tensorboard is not None:
                for key, value in row.items():
                    if isinstance(value, int | float) and key != "epoch":
                        self.tensorboard.add_scalar(key, value, epoch + 1)
            self.save_last()
            if not self.quiet:
                tqdm.write(format_epoch(row, cfg.metric), file=sys.stderr)
            if self.on_epoch_end is not None:
                self.on_epoch_end(state)
        if self.tensorboard is not None:
            self.tensorboard.close()
        return state

    def _train_epoch(self, epoch: int, disabled: bool) -> dict[str, Any]:
        torch.manual_seed(epoch_seed(self.seed, epoch, 0))
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 1))
        self.model.train()
        self.model.on_epoch_start(epoch, self.cfg.epochs)
        start, total, count = time.perf_counter(), 0.0, 0
        batches = self.windows.batches(self.cfg.batch_size, generator)
        for batch in tqdm(
            batches, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}", disable=disabled,
            leave=False,
        ):  # fmt: skip
            loss = self.model.training_loss(batch, generator)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}")
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.clip(self.groups)
            self.optimizer.step()
            self.scheduler.step()
            self.state.step += 1
            total += loss.item()
            count += 1
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "train_seconds": round(time.perf_counter() - start, 3),
        }
        for group in self.optimizer.param_groups:
            row[f"lr/{group['name']}"] = group["lr"]
        return row

    @staticmethod
    def clip(groups: list[ParamGroup]) -> None:
        """Clip each group's gradient norm on its own (0 leaves a group unclipped)."""
        for group in groups:
            if group.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(group.params, group.clip_norm)

    def _validate(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.model.eval()
        result = self.evaluator.evaluate(self.model)
        metrics = {f"valid/{k}": v for k, v in result.items() if "@" in k}
        value = metrics[f"valid/{self.cfg.metric}"]
        state = self.state
        if value > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
            save_checkpoint(
                self.run_dir / BEST,
                {"model": self.model.state_dict(), "epoch": state.epoch + 1, "metric": value},
            )
        else:
            state.bad_epochs += 1
            if self.cfg.patience and state.bad_epochs >= self.cfg.patience:
                state.stopped_early = True
        return {**metrics, "eval_seconds": round(time.perf_counter() - start, 3)}


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warmup to 1, then constant or cosine decay to 0 at ``total`` steps."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def format_epoch(row: dict[str, Any], metric: str) -> str:
    parts = [f"epoch {row['epoch']:3d}", f"loss {row['loss']:.4f}"]
    for key in ("valid/hit@10", f"valid/{metric}"):
        if key in row and key.split("/")[1] not in " ".join(parts):
            parts.append(f"{key.split('/')[1]} {row[key]:.4f}")
    parts.append(f"{row['train_seconds']:.1f}s")
    return "  ".join(parts)


def _metric_names(evaluator: Evaluator) -> list[str]:
    return [f"{m}@{k}" for k in evaluator.ks for m in ("hit", "ndcg", "mrr")]


def _tensorboard(run_dir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        print("tensorboard is not installed; train.tensorboard ignored", file=sys.stderr)
        return None
    return SummaryWriter(str(run_dir / "tensorboard"))
