from pathlib import Path

import pytest

from ur4rec.config import ConfigError, RunConfig, dump_config, load_config

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)


def test_overrides_and_round_trip(tmp_path: Path) -> None:
    cfg = load_config(None, ["train.lr=3e-4", "model.norm=post", "seed=7", "train.epochs=5"])
    assert cfg.train.lr == pytest.approx(3e-4) and cfg.model.norm == "post" and cfg.seed == 7
    (tmp_path / "c.yaml").write_text(dump_config(cfg))
    assert load_config(tmp_path / "c.yaml") == cfg


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["model.depth=3"], "unknown config key 'model.depth'"),
        (["train.lr=fast"], "train.lr: expected float, got 'fast'"),
        (["train.epochs=2.5"], "train.epochs: expected int"),
        (["loss.kind=hinge"], "loss.kind: expected one of"),
        (["train.tensorboard=maybe"], "train.tensorboard: expected true or false"),
        (["model=3"], "model: expected a mapping"),
        (["novalue"], "must look like key=value"),
    ],
)
def test_bad_values_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")
