"""Two training processes under torchrun (DDP on gloo) against one, and a killed two-process
run resumed. Small data, so the whole file takes well under a minute."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from ur4rec.cli import main
from ur4rec.config import load_config
from ur4rec.data.prepare import prepare_dataset
from ur4rec.train import run
from ur4rec.train.distributed import without_nproc
from ur4rec.train.trainer import read_log

SETTINGS = {
    "data": {"max_len": 6},
    "model": {"hidden": 16, "heads": 2, "inner": 32, "layers": 1, "dropout": 0.0,
              "attn_dropout": 0.0},
    "train": {"batch_size": 8, "lr": 1e-2, "epochs": 4, "patience": 0},
}  # fmt: skip
# Per-epoch mean loss, two processes against one with the same global batch (no dropout):
# each rank weights its mean by its share of the batch's positions, so only the order of the
# float sums differs (measured: under 1e-7 relative).
LOSS_TOLERANCE = 1e-5  # relative

KILL_AFTER_EPOCH_2 = """
import os, signal, sys
from pathlib import Path
from ur4rec.config import load_config
from ur4rec.train import distributed, run

distributed.init_from_env()

def stop(state):
    if state.epoch == 2:
        here = distributed.world()
        here.barrier()  # rank 0 has logged and saved epoch 2 before rank 1 dies
        if here.rank == 1:
            os.kill(os.getpid(), signal.SIGKILL)

run.train(load_config(sys.argv[1]), Path(sys.argv[2]), quiet=True, on_epoch_end=stop)
"""

# Rank 1 builds its model 2 s after rank 0, so rank 0 has saved inputs.pt by the time rank 1
# asks whether it exists: both must still take the same collectives.
SLOW_RANK_1 = """
import sys, time
from pathlib import Path
from ur4rec.config import load_config
from ur4rec.train import distributed, run

here = distributed.init_from_env()
build = run.build

def slow_build(*args, **kwargs):
    if here.rank == 1:
        time.sleep(2)
    return build(*args, **kwargs)

run.build = slow_build
run.train(load_config(sys.argv[1]), Path(sys.argv[2]), quiet=True)
"""


@pytest.fixture
def setup(cyclic_folder: Path, tmp_path: Path) -> Path:
    prepare_dataset("ml-100k", source=cyclic_folder)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(SETTINGS), encoding="utf-8")
    return config


def torchrun(*args: str, **kwargs: object) -> subprocess.CompletedProcess:
    """``args`` in two processes under torchrun, one thread each."""
    return subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
         *args],
        capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, **kwargs,
    )  # fmt: skip


def losses(run_dir: Path) -> list[float]:
    return [row["loss"] for row in read_log(run_dir / "log.jsonl")]


def test_two_processes_follow_one_and_a_killed_run_resumes(setup: Path, tmp_path: Path) -> None:
    one = run.train(load_config(setup), tmp_path / "one", quiet=True)
    two = tmp_path / "two"
    argv = ["train", "--config", str(setup), "--out", str(two), "--quiet", "--nproc", "2"]
    assert main(argv) == 0
    assert json.loads((two / "run.json").read_text())["status"] == "finished"
    expected, got = losses(one), losses(two)
    assert len(got) == len(expected) == 4
    for a, b in zip(got, expected, strict=True):
        assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (got, expected)
    assert got[-1] < got[0]  # it learns

    # Killed after its second epoch (rank 1 dies; torchrun stops rank 0), then resumed.
    script = tmp_path / "killed.py"
    script.write_text(KILL_AFTER_EPOCH_2, encoding="utf-8")
    part = tmp_path / "part"
    killed = torchrun(str(script), str(setup), str(part))
    assert killed.returncode != 0
    logged = [r["epoch"] for r in read_log(part / "log.jsonl")]
    assert logged == [1, 2], killed.stderr[-3000:]
    assert main(["train", "--resume", str(part), "--quiet", "--nproc", "2"]) == 0
    resumed = read_log(part / "log.jsonl")
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    # The same numbers as the run that was never stopped.
    for a, b in zip(resumed, read_log(two / "log.jsonl"), strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-6)
        assert a["valid/ndcg@10"] == pytest.approx(b["valid/ndcg@10"], abs=1e-9)
    summary = json.loads((part / "summary.json").read_text())
    assert summary["epochs_run"] == 4


def test_direct_torchrun_and_nproc_flag_parsing(setup: Path, tmp_path: Path) -> None:
    assert without_nproc(["train", "--nproc", "2", "--quiet", "--nproc=3"]) == ["train", "--quiet"]
    assert main(["train", "--config", str(setup), "--nproc", "0"]) == 1
    # A staged run under `torchrun ... -m ur4rec.cli train` itself.
    staged = {**SETTINGS, "stages": [
        {"name": "first", "epochs": 2, "train": ["sasrec"]},
        {"name": "second", "epochs": 1, "train": ["sasrec"], "lr": {"sasrec": 1e-3}},
    ]}  # fmt: skip
    config = tmp_path / "staged.yaml"
    config.write_text(yaml.safe_dump(staged), encoding="utf-8")
    out = tmp_path / "staged"
    done = torchrun("-m", "ur4rec.cli", "train", "--config", str(config), "--out", str(out),
                    "--quiet", "--json")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)  # rank 0 alone prints
    assert [s["stage"] for s in summary["stages"]] == ["first", "second"]
    assert (out / "stages" / "2-second" / "done.json").is_file()


@pytest.mark.parametrize("nccl", [True, False])
def test_nccl_for_gpu_tensors_where_a_gpu_is_visible(
    monkeypatch: pytest.MonkeyPatch, nccl: bool
) -> None:
    # GPU tensors (DDP's gradient sums under train.device=cuda) go over nccl where torch has
    # it; the CPU bookkeeping sums stay on gloo. Each process takes the GPU of its LOCAL_RANK.
    from ur4rec.train import distributed

    chosen: list[str] = []
    current: list[int] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "3")
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed.torch.cuda, "set_device", current.append)
    monkeypatch.setattr(distributed.dist, "is_nccl_available", lambda: nccl)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", chosen.append)
    distributed.init_from_env()
    assert chosen == (["cpu:gloo,cuda:nccl"] if nccl else ["gloo"])
    assert current == [1]


def test_gloo_alone_on_a_machine_without_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    from ur4rec.train import distributed

    chosen: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(distributed.dist, "is_initialized", lambda: False)
    monkeypatch.setattr(distributed.dist, "init_process_group", chosen.append)
    distributed.init_from_env()
    assert chosen == ["gloo"]


def test_a_slow_rank_does_not_deadlock_the_run(setup: Path, tmp_path: Path) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SLOW_RANK_1, encoding="utf-8")
    out = tmp_path / "slow"
    done = torchrun(str(script), str(setup), str(out), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [1, 2, 3, 4]


def test_training_device_names_what_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    from ur4rec.errors import Ur4recError
    from ur4rec.train import distributed

    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: False)
    assert distributed.training_device("cpu") == torch.device("cpu")
    assert distributed.training_device("auto") == torch.device("cpu")
    with pytest.raises(Ur4recError, match="train.device=cuda: torch sees no CUDA GPU"):
        distributed.training_device("cuda")
    # With two GPUs visible: cuda is this process's LOCAL_RANK's, cuda:N that one, alone.
    monkeypatch.setattr(distributed.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(distributed.torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.training_device("cuda") == torch.device("cuda", 1)
    assert distributed.training_device("auto") == torch.device("cuda", 1)
    assert distributed.training_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(Ur4recError, match="this machine has 2 CUDA GPU"):
        distributed.training_device("cuda:2")
    monkeypatch.setattr(distributed, "world", lambda: distributed.World(rank=0, size=2))
    with pytest.raises(Ur4recError, match="names one GPU for every process"):
        distributed.training_device("cuda:0")
