import json
from pathlib import Path

import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import load_config
from ur4rec.data.prepare import prepare_dataset
from ur4rec.errors import Ur4recError
from ur4rec.runs.checkpoint import CheckpointError, load_checkpoint
from ur4rec.train import run, trainer
from ur4rec.train.trainer import ParamGroup, Trainer, lr_factor, read_log

TINY = [
    "data.max_len=6", "model.hidden=16", "model.heads=2", "model.inner=32", "model.layers=1",
    "train.batch_size=8", "train.lr=1e-2", "train.epochs=4", "train.patience=0",
]  # fmt: skip


@pytest.fixture
def prepared(cyclic_folder: Path) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)


def metrics(rows: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]


def test_same_seed_same_metrics(prepared, tmp_path: Path) -> None:
    cfg = load_config(None, TINY)
    a = run.train(cfg, tmp_path / "a", quiet=True)
    b = run.train(cfg, tmp_path / "b", quiet=True)
    assert metrics(read_log(a / "log.jsonl")) == metrics(read_log(b / "log.jsonl"))
    c = run.train(load_config(None, [*TINY, "seed=1"]), tmp_path / "c", quiet=True)
    assert metrics(read_log(a / "log.jsonl")) != metrics(read_log(c / "log.jsonl"))


def test_interrupted_and_resumed_equals_uninterrupted(prepared, tmp_path: Path) -> None:
    for loss in ("ce", "bce"):
        cfg = load_config(None, [*TINY, f"loss.kind={loss}", "model.dropout=0.3"])
        whole = run.train(cfg, tmp_path / f"whole-{loss}", quiet=True)

        def stop_after_two(state) -> None:
            if state.epoch == 2:
                raise KeyboardInterrupt

        part = tmp_path / f"part-{loss}"
        with pytest.raises(KeyboardInterrupt):
            run.train(cfg, part, quiet=True, on_epoch_end=stop_after_two)
        assert json.loads((part / "run.json").read_text())["status"] == "interrupted"
        # A log row written after the last checkpoint (a kill between the two) is dropped.
        with open(part / "log.jsonl", "a") as f:
            f.write('{"epoch": 3, "loss": 0.0}\n{"epoch": 4, "lo')
        run.resume(part, quiet=True)
        assert metrics(read_log(part / "log.jsonl")) == metrics(read_log(whole / "log.jsonl"))
        whole_summary = json.loads((whole / "summary.json").read_text())
        part_summary = json.loads((part / "summary.json").read_text())
        assert part_summary["test"] == whole_summary["test"]


def test_early_stopping_keeps_best(prepared, tmp_path: Path) -> None:
    # With lr 1e-30 (below float32 resolution) nothing improves after the first evaluation:
    # patience 2 stops at epoch 3.
    cfg = load_config(None, [*TINY, "train.lr=1e-30", "train.patience=2", "train.epochs=10"])
    out = run.train(cfg, tmp_path / "r", quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs_run"] == 3 and summary["stopped_early"] and summary["best_epoch"] == 1
    assert load_checkpoint(out / "best.pt")["epoch"] == 1


def test_training_learns_the_cycle(prepared, tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=15"])
    out = run.train(cfg, tmp_path / "r", quiet=True)
    rows = read_log(out / "log.jsonl")
    assert rows[-1]["loss"] < rows[0]["loss"]
    assert json.loads((out / "summary.json").read_text())["valid"]["hit@5"] > 0.5


def test_bfloat16_training_follows_float32_and_keeps_float32_weights(
    prepared, tmp_path: Path
) -> None:
    """train.precision=bfloat16 runs the forward pass under autocast: the loss curve stays
    near the float32 one from the same seed, it still learns, and the weights stay float32."""
    steps = [*TINY, "train.epochs=15"]
    base = read_log(run.train(load_config(None, steps), tmp_path / "f32", quiet=True) / "log.jsonl")
    cfg = load_config(None, [*steps, "train.precision=bfloat16"])
    out = run.train(cfg, tmp_path / "bf16", quiet=True)
    rows = read_log(out / "log.jsonl")
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert [r["loss"] for r in rows] != [r["loss"] for r in base]
    for a, b in zip(rows, base, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=0.1)
    assert json.loads((out / "summary.json").read_text())["valid"]["hit@5"] > 0.5
    weights = load_checkpoint(out / "best.pt")["model"]
    assert all(t.dtype == torch.float32 for t in weights.values() if t.is_floating_point())


def test_bfloat16_on_a_cpu_without_it_warns_once(
    prepared, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setattr(trainer, "native_bfloat16", lambda: False)
    trainer._warn_emulated_bfloat16.cache_clear()
    cfg = load_config(None, [*TINY, "train.epochs=1", "train.precision=bfloat16"])
    run.train(cfg, tmp_path / "a", quiet=True)
    run.train(cfg, tmp_path / "b", quiet=True)
    assert capsys.readouterr().err.count("no native bfloat16") == 1
    trainer._warn_emulated_bfloat16.cache_clear()
    monkeypatch.setattr(trainer, "native_bfloat16", lambda: True)
    run.train(cfg, tmp_path / "c", quiet=True)
    assert "bfloat16" not in capsys.readouterr().err


def test_checkpoints_weights_only_and_corrupt(prepared, tmp_path: Path) -> None:
    out = run.train(load_config(None, [*TINY, "train.epochs=1"]), tmp_path / "r", quiet=True)
    for name in ("best.pt", "last.pt"):
        payload = torch.load(out / name, weights_only=True)
        assert "model" in payload
    (out / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        run.evaluate(out)


def test_lr_schedule() -> None:
    assert lr_factor(0, 10, 100, "cosine") == pytest.approx(0.1)
    assert lr_factor(9, 10, 100, "cosine") == pytest.approx(1.0)
    assert lr_factor(55, 10, 100, "cosine") == pytest.approx(0.5)
    assert lr_factor(100, 10, 100, "cosine") == pytest.approx(0.0)
    assert lr_factor(50, 10, 100, "constant") == 1.0


def test_gradient_clipping_is_per_group() -> None:
    a, b = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(3))
    a.grad, b.grad = torch.full((3,), 10.0), torch.full((3,), 10.0)
    groups = [ParamGroup("a", [a], 0.1, clip_norm=1.0), ParamGroup("b", [b], 0.1, clip_norm=0.0)]
    Trainer.clip(groups)
    assert a.grad.norm().item() == pytest.approx(1.0)
    assert b.grad.norm().item() == pytest.approx(10.0 * 3**0.5)  # 0 disables clipping


def test_cli_train_evaluate_end_to_end(prepared, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = Path(__file__).parent.parent / "configs" / "sasrec-ml-100k.yaml"
    argv = ["train", "--config", str(config), "--out", str(out), "--quiet", "--json"]
    for item in [*TINY, "train.epochs=2"]:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["epochs_run"] == 2 and "hit@10" in summary["test"]
    assert (
        main(["evaluate", str(out), "--protocol", "sampled:5", "--split", "valid", "--json"]) == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert (
        result["protocol"] == "sampled:5" and result["split"] == "valid" and result["users"] == 40
    )
    assert main(["train", "--config", str(config), "--out", str(out)]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert main(["train", "--config", str(config), "--set", "model.depth=2"]) == 1
    assert "unknown config key 'model.depth'" in capsys.readouterr().err
    assert main(["evaluate", str(tmp_path / "nothing")]) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_checkpoint_of_another_architecture(prepared, tmp_path: Path) -> None:
    out = run.train(load_config(None, [*TINY, "train.epochs=1"]), tmp_path / "r", quiet=True)
    config = (out / "config.yaml").read_text().replace("hidden: 16", "hidden: 32")
    (out / "config.yaml").write_text(config)
    with pytest.raises(CheckpointError, match="does not fit this model"):
        run.evaluate(out)


def test_tensorboard_is_optional(prepared, tmp_path: Path, capsys) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=1", "train.tensorboard=true"])
    out = run.train(cfg, tmp_path / "r", quiet=True)
    try:
        import torch.utils.tensorboard  # noqa: F401
    except ImportError:
        assert "tensorboard is not installed" in capsys.readouterr().err
        assert not (out / "tensorboard").exists()
    else:
        assert any((out / "tensorboard").iterdir())
    assert (out / "summary.json").is_file()


def test_user_ranks_give_the_run_metrics(prepared, tmp_path: Path) -> None:
    from ur4rec.eval.compare import ndcg_at

    out = run.train(load_config(None, [*TINY, "train.epochs=2"]), tmp_path / "r", quiet=True)
    ranks = run.user_ranks(out, [("test", "full"), ("valid", "sampled:5")])
    assert set(ranks) == {"test full", "valid sampled:5"}
    for (part, protocol), key in [
        (("test", "full"), "test full"),
        (("valid", "sampled:5"), "valid sampled:5"),
    ]:
        metrics = run.evaluate(out, protocol, part)
        assert ndcg_at(ranks[key]).mean() == pytest.approx(metrics["ndcg@10"])
        assert (ranks[key] < 10).mean() == pytest.approx(metrics["hit@10"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only host")
def test_train_device_auto_is_the_cpu_here_and_cuda_is_refused(prepared, tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    cpu = run.train(cfg, tmp_path / "cpu", quiet=True)
    auto = run.train(load_config(None, [*TINY, "train.epochs=2", "train.device=auto"]),
                     tmp_path / "auto", quiet=True)  # fmt: skip
    assert metrics(read_log(auto / "log.jsonl")) == metrics(read_log(cpu / "log.jsonl"))
    with pytest.raises(Ur4recError, match="train.device=cuda: torch sees no CUDA GPU"):
        run.train(load_config(None, [*TINY, "train.device=cuda"]), tmp_path / "gpu", quiet=True)
    assert not (tmp_path / "gpu" / "best.pt").exists()
