"""Data-parallel training on torch.distributed: DDP, launched by torchrun.

``ur4rec train ... --nproc N`` starts ``torchrun --standalone --nproc-per-node N -m ur4rec.cli
train ...`` (the same as typing that); across machines, start torchrun on each with a shared
rendezvous (``--nnodes M --rdzv-backend c10d --rdzv-endpoint HOST:PORT``). Every process
runs the same code on its share of the data:

- Each epoch's order of the training windows comes from the seed, the same on every rank;
  each global batch of ``train.batch_size`` windows is dealt out across the ranks, and DDP
  averages the gradients, so N processes take the steps one process would (up to how each
  rank's mean weights its positions).
- Validation is sharded by users and the ranks' target ranks are summed, so every rank
  computes the same metrics and takes the same early-stopping decisions.
- Rank 0 alone writes logs, checkpoints and summaries (atomically); the others wait for it
  before reading what it wrote. A killed run resumes with ``--resume`` like any other.

Backend: gloo for CPU tensors, and nccl for GPU tensors where this torch has it
(``cpu:gloo,cuda:nccl``): with ``train.device=cuda`` each process trains on the GPU of its
LOCAL_RANK and DDP's gradient sums go over nccl, while the small bookkeeping sums (loss
totals, validation ranks) stay CPU tensors on gloo.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ur4rec.errors import Ur4recError

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (one process: rank 0 of 1)."""

    rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def on_main(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``fn(*args)`` on rank 0 (a write); every rank waits until it is done."""
        result = fn(*args, **kwargs) if self.main else None
        self.barrier()
        return result

    def broadcast(self, obj: T) -> T:
        """Rank 0's ``obj`` on every rank (e.g. a run folder named after the clock)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def sum_(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum ``tensor`` over the ranks, in place (a no-op for one process)."""
        if self.distributed:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def world() -> World:
    """The current process group, or a world of one."""
    if dist.is_available() and dist.is_initialized():
        return World(dist.get_rank(), dist.get_world_size())
    return World()


def backend() -> str:
    """gloo, plus nccl for GPU tensors when this torch build has it and sees a GPU."""
    if torch.cuda.is_available() and dist.is_nccl_available():
        return "cpu:gloo,cuda:nccl"
    return "gloo"


def init_from_env() -> World:
    """Join the process group torchrun describes (WORLD_SIZE, RANK, MASTER_ADDR, ...); a
    process started without torchrun is a world of one."""
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        if torch.cuda.is_available():  # nccl's own collectives run on the current device
            torch.cuda.set_device(local_rank() % torch.cuda.device_count())
        dist.init_process_group(backend())
    return world()


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def training_device(spec: str) -> torch.device:
    """The device ``train.device`` names for this process: ``cuda`` is the GPU of this
    process's LOCAL_RANK (one per process under torchrun), ``auto`` is that GPU when torch sees
    one and the CPU otherwise."""
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise Ur4recError(
            f"train.device={spec}: torch sees no CUDA GPU here (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'no'}); use train.device=cpu"
        )
    count = torch.cuda.device_count()
    index = int(spec.split(":", 1)[1]) if ":" in spec else local_rank()
    if spec.startswith("cuda:") and world().distributed:
        raise Ur4recError(
            f"train.device={spec} names one GPU for every process; use train.device=cuda, "
            "which gives each process the GPU of its LOCAL_RANK"
        )
    if index >= count:
        raise Ur4recError(f"train.device={spec}: this machine has {count} CUDA GPU(s)")
    return torch.device("cuda", index)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or int(os.environ.get("WORLD_SIZE", "1")) > 1


def without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` (or ``--nproc=N``)."""
    out: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def launch(argv: Sequence[str], nproc: int) -> int:
    """Run ``ur4rec <argv>`` in ``nproc`` processes on this machine under torchrun; its exit
    status (non-zero when any process failed)."""
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "ur4rec.cli", *argv,
    ]  # fmt: skip
    # One thread per process unless asked otherwise: N processes share the machine's cores.
    env = {**os.environ}
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    return subprocess.call(cmd, env=env)
