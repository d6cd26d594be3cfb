"""The training engine: AdamW, warmup + cosine schedule, per-group gradient clipping, early
stopping on a validation metric, best/last checkpoints, exact resume.

Exact resume without saving RNG state: every epoch reseeds the global generator (dropout) and
its own data generator (order, negatives) from (seed, epoch), so epoch k draws the same
numbers whether or not the run was restarted before it.

Under torchrun (train/distributed.py) the model trains wrapped in DDP: every rank draws the
same window order, takes its share of each batch and its own dropout and negatives (seeded
by rank too), and weights its mean loss by its share of the batch's positions, so the
averaged gradient is the whole batch's; rank 0 alone writes.

``train.device`` moves the model there for the fit and back to the CPU after it; each batch
is drawn on the CPU (the same order and negatives for a seed on any device) and moved.
"""

from __future__ import annotations

import dataclasses
import functools
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
from ur4rec.data.splits import PAD
from ur4rec.data.windows import TrainWindows
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_text
from ur4rec.models.base import RecModel
from ur4rec.runs.checkpoint import save_checkpoint
from ur4rec.runs.layout import BEST, LAST, LOG_FILE, append_log, load_state_into, read_log
from ur4rec.text.encoder import native_bfloat16
from ur4rec.train.distributed import training_device, world


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
        self.world = world()
        self.device = training_device(train.device)
        model.to(self.device)  # in place: the parameters the optimiser gets are these
        self.loss_module: nn.Module = _Loss(model, train.precision)
        if train.precision == "bfloat16" and self.device.type == "cpu" and not native_bfloat16():
            self.world.on_main(_warn_emulated_bfloat16)
        if self.world.distributed:
            from torch.nn.parallel import DistributedDataParallel

            # A static graph: a stage's objective uses the same parameters in every step
            # (possibly not all of them); the buffers are the same on every rank.
            self.loss_module = DistributedDataParallel(
                self.loss_module, static_graph=True, forward_sync_buffers=False,
                device_ids=[self.device] if self.device.type == "cuda" else None,
            )  # fmt: skip
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
        if self.world.distributed and len(windows) % train.batch_size < self.world.size:
            self.steps_per_epoch = max(1, len(windows) // train.batch_size)  # last one skipped
        total = train.epochs * self.steps_per_epoch
        warmup = int(train.warmup_epochs * self.steps_per_epoch)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: lr_factor(step, warmup, total, train.schedule)
        )
        self.state = FitState()
        self.tensorboard = (
            _tensorboard(self.run_dir) if train.tensorboard and self.world.main else None
        )
        if train.metric not in _metric_names(evaluator):
            raise Ur4recError(
                f"train.metric {train.metric!r} is not one of {_metric_names(evaluator)}"
            )

    # -- checkpoints -------------------------------------------------------------------
    def save_last(self) -> None:
        self.world.on_main(self._save_last)

    def _save_last(self) -> None:
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
        self.world.on_main(atomic_write_text, log, "".join(json.dumps(r) + "\n" for r in kept))

    # -- the loop ----------------------------------------------------------------------
    def fit(self) -> FitState:
        """Train to the end (or early stop); the model is back on the CPU afterwards."""
        try:
            return self._epochs(self.cfg.epochs, validate=True)
        finally:
            self.model.to("cpu")

    def train_epochs(self, epochs: int) -> FitState:
        """Train up to ``epochs`` epochs in all, without validation (a refit, whose validation
        targets are training data): the schedule is the one ``fit`` follows, so epoch k gets
        the learning rate it had there. Resumable like ``fit``; the model ends on the CPU."""
        try:
            return self._epochs(epochs, validate=False)
        finally:
            self.model.to("cpu")

    def _epochs(self, end: int, validate: bool) -> FitState:
        cfg, state = self.cfg, self.state
        self.run_dir.mkdir(parents=True, exist_ok=True)
        disabled = progress_disabled(self.quiet)
        epochs = tqdm(
            range(state.epoch, end), desc="epochs", initial=state.epoch,
            total=end, disable=disabled, leave=False,
        )  # fmt: skip
        for epoch in epochs:
            if state.stopped_early:
                break
            row = self._train_epoch(epoch, disabled)
            if validate and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs):
                row.update(self._validate())
            state.epoch = epoch + 1
            state.history.append(row)
            if self.world.main:
                append_log(self.run_dir / LOG_FILE, row)
            if self.tensorboard is not None:
                for key, value in row.items():
                    if isinstance(value, int | float) and key != "epoch":
                        self.tensorboard.add_scalar(key, value, epoch + 1)
            self.save_last()
            if not self.quiet and self.world.main:
                tqdm.write(format_epoch(row, cfg.metric), file=sys.stderr)
            if validate and self.on_epoch_end is not None:
                self.on_epoch_end(state)
        if self.tensorboard is not None:
            self.tensorboard.close()
        return state

    def _train_epoch(self, epoch: int, disabled: bool) -> dict[str, Any]:
        rank, size = self.world.rank, self.world.size
        torch.manual_seed(epoch_seed(self.seed, epoch, 0) + rank)
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch, 1))
        self.model.train()
        self.model.on_epoch_start(epoch, self.cfg.epochs)
        start, total, count = time.perf_counter(), 0.0, 0
        batches = self.windows.batches(self.cfg.batch_size, generator, (rank, size))
        if size > 1:
            # The order came from the shared generator; negatives differ by rank.
            batches = _first_then(batches, generator, epoch_seed(self.seed, epoch, 2 + rank))
        for batch in tqdm(
            batches, total=self.steps_per_epoch, desc=f"epoch {epoch + 1}",
            disable=disabled or not self.world.main, leave=False,
        ):  # fmt: skip
            if self.device.type != "cpu":
                batch = _to_device(batch, self.device)
            loss = self.loss_module(batch, generator)
            if size > 1:
                loss = loss * self._share(batch)
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
        if size > 1:  # the mean over every rank's batches
            total, count = self.world.sum_(torch.tensor([total, float(count)])).tolist()
        row: dict[str, Any] = {
            "epoch": epoch + 1,
            "loss": total / max(count, 1),
            "train_seconds": round(time.perf_counter() - start, 3),
        }
        for group in self.optimizer.param_groups:
            row[f"lr/{group['name']}"] = group["lr"]
        return row

    def _share(self, batch: Any) -> torch.Tensor:
        """size x this rank's share of the global batch's positions: DDP averages the ranks'
        gradients, so weighting each rank's mean loss by it gives the gradient of the mean
        over the whole batch, as one process would take it."""
        mine = torch.tensor([float((batch.targets != PAD).sum())])
        total = self.world.sum_(mine.clone())
        return mine[0] * self.world.size / total[0].clamp(min=1.0)

    @staticmethod
    def clip(groups: list[ParamGroup]) -> None:
        """Clip each group's gradient norm on its own (0 leaves a group unclipped)."""
        for group in groups:
            if group.clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(group.params, group.clip_norm)

    def _validate(self) -> dict[str, Any]:
        start = time.perf_counter()
        self.model.eval()
        result = self.evaluator.evaluate(self.model, sharded=self.world.distributed)
        metrics = {f"valid/{k}": v for k, v in result.items() if "@" in k}
        value = metrics[f"valid/{self.cfg.metric}"]
        state = self.state
        if value > state.best_metric:
            state.best_metric, state.best_epoch, state.bad_epochs = value, state.epoch + 1, 0
            self.world.on_main(
                save_checkpoint,
                self.run_dir / BEST,
                {"model": self.model.state_dict(), "epoch": state.epoch + 1, "metric": value},
            )
        else:
            state.bad_epochs += 1
            if self.cfg.patience and state.bad_epochs >= self.cfg.patience:
                state.stopped_early = True
        return {**metrics, "eval_seconds": round(time.perf_counter() - start, 3)}


@functools.cache
def _warn_emulated_bfloat16() -> None:
    """Once per process: bfloat16 without hardware support is emulated, about 9 times slower
    than float32 for SASRec on an AVX2-only CPU (docs/results.md, Speed)."""
    print(
        "warning: train.precision=bfloat16, but this CPU has no native bfloat16 (AVX-512 BF16 "
        "or AMX): it is emulated and several times slower than float32; use "
        "train.precision=float32 here",
        file=sys.stderr,
    )


class _Loss(nn.Module):
    """The model's training loss as a forward pass, which is what DDP wraps (it syncs
    gradients on the backward pass of what its forward returned)."""

    def __init__(self, model: RecModel, precision: str = "float32") -> None:
        super().__init__()
        self.model = model
        self.precision = precision

    def forward(self, batch: Any, generator: torch.Generator) -> torch.Tensor:
        if self.precision == "float32":
            return self.model.training_loss(batch, generator)
        device = next(self.model.parameters()).device.type
        with torch.autocast(device, dtype=torch.bfloat16):
            return self.model.training_loss(batch, generator).float()


def _to_device(batch: Any, device: torch.device) -> Any:
    """A training batch (a dataclass of tensors) with every tensor on ``device``."""
    moved = {
        f.name: value.to(device, non_blocking=True) if isinstance(value, torch.Tensor) else value
        for f in dataclasses.fields(batch)
        for value in [getattr(batch, f.name)]
    }
    return dataclasses.replace(batch, **moved)


def _first_then(batches: Any, generator: torch.Generator, seed: int) -> Any:
    """``batches``, with ``generator`` reseeded once the first batch (the order) is drawn."""
    for i, batch in enumerate(batches):
        if i == 0:
            generator.manual_seed(seed)
        yield batch


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
