"""The model interface and registry: every model, through the same calls, end to end."""

import json
from pathlib import Path

import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import ModelConfig, load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.splits import PAD
from ur4rec.models import model_class, model_names
from ur4rec.models.gru4rec import GRU4Rec
from ur4rec.serve.recommender import Recommender
from ur4rec.train import run

from .test_trainer import TINY
from .test_ur4rec import TINY_UR4REC

CONFIGS = Path(__file__).parent.parent / "configs"


def test_registry_knows_every_shipped_model() -> None:
    assert set(model_names()) >= {"sasrec", "gru4rec", "ur4rec", "pop", "ease"}
    assert model_class("gru4rec") is GRU4Rec
    for name in model_names():  # class attributes must not shadow nn.Module's methods
        cls = model_class(name)
        assert callable(cls.modules) and callable(cls.parameters) and callable(cls.train), name


def test_gru4rec_ignores_padding() -> None:
    torch.manual_seed(0)
    model = GRU4Rec(10, 6, ModelConfig(hidden=8, layers=2, dropout=0.0)).eval()
    left = torch.tensor([[PAD, PAD, 1, 2, 3], [4, 5, 6, 7, 8]])
    right = torch.tensor([[1, 2, 3, PAD, PAD], [4, 5, 6, 7, 8]])
    long = torch.tensor([[PAD] * 7 + [1, 2, 3]])
    with torch.no_grad():
        torch.testing.assert_close(model.user_vectors(left), model.user_vectors(right))
        torch.testing.assert_close(model.user_vectors(left)[:1], model.user_vectors(long))
        states = model.encode(left)
        assert states[0, :2].abs().sum() == 0  # zero at padding
        # Each position sees only its prefix: the state after [1, 2] is the prefix's own.
        torch.testing.assert_close(states[0, 3], model.encode(torch.tensor([[1, 2]]))[0, -1])
        scores = model.score(HistoryBatch(torch.tensor([0, 1]), left))
    assert scores.shape == (2, 10) and torch.isfinite(scores).all()


@pytest.mark.parametrize(
    ("config", "overrides"),
    [
        ("gru4rec-ml-100k.yaml", [*TINY]),
        (
            "ur4rec-gru4rec-ml-100k-liked.yaml",
            ["data.dataset=ml-100k", *TINY_UR4REC, "model.backbone=gru4rec", "fusion.prior=ease"],
        ),
        ("sasrec-ml-100k.yaml", [*TINY, "model.name=ease", "ease.recent=2"]),
        ("sasrec-ml-100k.yaml", [*TINY, "model.name=sasrec-content", "model.id_residual=0.5"]),
        ("sasrec-ml-100k.yaml", [*TINY, "model.name=text-knn", "data.scheme=cold-items"]),
        ("sasrec-ml-100k.yaml", [*TINY, "model.name=rp3beta", "rp3beta.top=5"]),
    ],
    ids=["gru4rec", "ur4rec-on-gru4rec", "ease", "sasrec-content", "text-knn-cold", "rp3beta"],
)
def test_a_model_trains_evaluates_recommends_serves_and_reports(
    cyclic_folder: Path, tmp_path: Path, capsys, config: str, overrides: list[str]
) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)
    cfg = load_config(CONFIGS / config, overrides)
    out = run.train(cfg, tmp_path / "run", quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test"]["users"] == 40
    # The same figure again from the checkpoint, by `ur4rec evaluate`.
    assert run.evaluate(out)["ndcg@10"] == pytest.approx(summary["test"]["ndcg@10"])
    recommender = Recommender(out)
    answer = recommender.recommend_user("1", 3, explain=True)
    assert len(answer.items) == 3 and answer.model == cfg.model.name
    new = recommender.recommend_history(["1", "2"], 3)
    assert len(new.items) == 3
    assert main(["report", str(out)]) == 0
    report = (out / "REPORT.md").read_text()
    assert "## What was trained" in report and "## Results on the test split" in report
    assert "## By group" in report and "text-knn" in report
    assert "rp3beta (alpha " in report  # the baseline row names what validation chose


def test_the_public_api(cyclic_folder: Path, tmp_path: Path) -> None:
    import ur4rec

    ur4rec.prepare_dataset("ml-100k", source=cyclic_folder)
    cfg = ur4rec.load_config(CONFIGS / "gru4rec-ml-100k.yaml", [*TINY, "train.epochs=2"])
    run_dir = ur4rec.train_run(cfg, tmp_path / "api", quiet=True)
    result = ur4rec.evaluate_run(run_dir, protocol="full", part="test")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["model"] == "gru4rec"
    assert result["ndcg@10"] == pytest.approx(summary["test"]["ndcg@10"])
    recommender = ur4rec.Recommender(run_dir)
    assert len(recommender.recommend_history(["1", "2"], k=4).items) == 4
    assert "gru4rec" in ur4rec.model_names() and issubclass(GRU4Rec, ur4rec.RecModel)
    assert set(ur4rec.__all__) <= set(dir(ur4rec))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = ur4rec.nope


def test_a_run_loads_for_inference_from_what_it_saved(
    cyclic_folder: Path, tmp_path: Path, monkeypatch
) -> None:
    from ur4rec.runs.checkpoint import CheckpointError

    prepare_dataset("ml-100k", source=cyclic_folder)
    overrides = ["data.dataset=ml-100k", *TINY_UR4REC, "fusion.prior=ease"]
    cfg = load_config(CONFIGS / "ur4rec-ml-100k-liked.yaml", overrides)
    out = run.train(cfg, tmp_path / "run", quiet=True)
    summary = json.loads((out / "summary.json").read_text())
    assert (out / "inputs.pt").is_file() and (out / "inputs.pt.sha256").is_file()

    # Neither the texts nor the EASE fit are needed again: the run's inputs.pt has them.
    def refuse(*args, **kwargs):
        raise AssertionError("loading a run must not rebuild its inputs")

    with monkeypatch.context() as patched:
        patched.setattr("ur4rec.text.features.text_features", refuse)
        patched.setattr("ur4rec.models.ur4rec.ease_weights", refuse)
        assert run.evaluate(out)["ndcg@10"] == summary["test"]["ndcg@10"]
        assert len(Recommender(out).recommend_user("1", 3).items) == 3

    data = bytearray((out / "inputs.pt").read_bytes())
    data[len(data) // 2] ^= 0x01
    (out / "inputs.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="inputs.pt is corrupt"):
        run.evaluate(out)
    # A run made before runs kept their inputs is rebuilt from its texts and data.
    (out / "inputs.pt").unlink()
    (out / "inputs.pt.sha256").unlink()
    assert run.evaluate(out)["ndcg@10"] == summary["test"]["ndcg@10"]
