from pathlib import Path

import pytest

from ur4rec.config import ConfigError, RunConfig, dump_config, load_config, to_dict

CONFIGS = sorted((Path(__file__).parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.name for p in CONFIGS])
def test_shipped_configs_load(path: Path) -> None:
    from ur4rec.models import check_config

    cfg = load_config(path)
    assert isinstance(cfg, RunConfig)
    check_config(cfg)  # its model exists and its stages name that model's modules


def test_include_merges_section_by_section(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(
        "seed: 1\nmodel: {hidden: 32, heads: 2}\nstages: [{name: a, train: [sasrec]}]\n"
    )
    (tmp_path / "more.yaml").write_text("include: base.yaml\ntrain: {lr: 0.01}\n")
    (tmp_path / "top.yaml").write_text(
        "include: [more.yaml]\nmodel: {hidden: 64}\nstages: [{name: b, train: [sasrec]}]\n"
    )
    cfg = load_config(tmp_path / "top.yaml", ["seed=3"])
    assert cfg.seed == 3 and cfg.train.lr == 0.01
    assert cfg.model.hidden == 64 and cfg.model.heads == 2  # merged within the section
    assert [s.name for s in cfg.stages] == ["b"]  # a list is replaced whole
    # The shipped variants are small files over a base.
    variant = load_config(CONFIGS[0].parent / "ur4rec-gru4rec-ml-100k-liked.yaml")
    base = load_config(CONFIGS[0].parent / "ur4rec-ml-100k-liked.yaml")
    assert variant.model.backbone == "gru4rec" and variant.stages == base.stages


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"a.yaml": "include: a.yaml\n"}, "includes itself"),
        ({"a.yaml": "include: b.yaml\n", "b.yaml": "include: a.yaml\n"}, "includes itself"),
        ({"a.yaml": "include: missing.yaml\n"}, "config file not found"),
        ({"a.yaml": "include: {x: 1}\n"}, "include must be a file name"),
    ],
)
def test_bad_includes_are_named(tmp_path: Path, files: dict[str, str], message: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(tmp_path / "a.yaml")


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
        (["train.device=gpu"], "train.device: must be cpu, cuda, cuda:N or auto, got 'gpu'"),
        (["loss.logit_adjust=-1"], "loss.logit_adjust: must be a finite number >= 0"),
        (["loss.kind=bce", "loss.logit_adjust=1"], "loss.logit_adjust: needs loss.kind ce"),
        (
            ["model.name=ur4rec", "retriever.loss=mined", "loss.logit_adjust=1"],
            "needs retriever.loss full for ur4rec",
        ),
    ],
)
def test_bad_values_are_named(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_train_settings_a_stage_shadows_are_refused_on_a_staged_config() -> None:
    staged = Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"
    for key in ("train.epochs=3", "train.patience=2", "train.metric=hit@10"):
        name = key.partition("=")[0].split(".")[1]
        with pytest.raises(ConfigError, match=rf"has no effect.*stages\.pretrain_sasrec\.{name}"):
            load_config(staged, [key])
    # Per stage it is taken; without stages the train section's value is the one read.
    cfg = load_config(staged, ["stages.pretrain_sasrec.epochs=3", "train.lr=1e-3"])
    assert cfg.stages[0].epochs == 3
    assert load_config(None, ["train.epochs=3"]).train.epochs == 3


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "bad.yaml").write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(tmp_path / "list.yaml")


def test_experiment_variants_are_valid_configs() -> None:
    import sys

    from ur4rec.models import check_config

    sys.path.insert(0, str(CONFIGS[0].parent.parent / "benchmarks"))
    try:
        from ur4rec_quality import read_variants
    finally:
        sys.path.pop(0)
    variants = read_variants()
    assert "default" in variants and len(variants) > 20
    for name, variant in variants.items():
        for dataset in ("ml-100k-liked", "ml-100k"):
            cfg = load_config(CONFIGS[0].parent / f"ur4rec-{dataset}.yaml", variant.overrides)
            check_config(cfg)
        assert variant.base in variants, name
        assert variant.reuse <= len(cfg.stages), name


def test_tuned_configs_match_the_search_and_the_variant() -> None:
    import json
    import math
    import sys

    root = CONFIGS[0].parent.parent
    sys.path.insert(0, str(root / "benchmarks"))
    try:
        from ur4rec_quality import read_variants
    finally:
        sys.path.pop(0)
    # Each tuned SASRec file holds its dataset's recorded search's best, to three figures,
    # on that dataset.
    searches = json.loads((root / "docs" / "results" / "tune-search.json").read_text())
    for dataset in ("ml-100k-liked", "ml-100k"):
        best = next(s for s in searches if s["config"] == f"configs/sasrec-{dataset}.yaml")
        tuned = to_dict(load_config(root / "configs" / f"sasrec-{dataset}-tuned.yaml"))
        assert tuned["data"]["dataset"] == dataset
        for key, value in best["best"]["params"].items():
            section, name = key.split(".")
            got = tuned[section][name]
            if isinstance(value, float):
                assert math.isclose(got, float(f"{value:.3g}")), (dataset, key)
            else:
                assert got == value, (dataset, key)
    tuned = to_dict(load_config(root / "configs" / "sasrec-ml-100k-liked-tuned.yaml"))
    # The variant "tuned" gives UR4Rec's backbone SASRec's searched settings.
    variant = read_variants()["tuned"]
    base = root / "configs" / "ur4rec-ml-100k-liked.yaml"
    from_variant = to_dict(load_config(base, variant.overrides))
    assert from_variant["stages"][0]["lr"] == {"sasrec": tuned["train"]["lr"]}
    for key in ("hidden", "dropout", "attn_dropout"):
        assert from_variant["model"][key] == tuned["model"][key]
    # Each UR4Rec tuned file is its dataset's default with train.refit as that dataset's
    # rehearsal chose it (the rule in docs/results.md: refit when the mean over seeds of
    # refit - chosen full NDCG@10 is above zero), and nothing else.
    for dataset, rehearsal in (("ml-100k-liked", ""), ("ml-100k", "-ml-100k")):
        record = json.loads(
            (root / "docs" / "results" / f"refit-rehearsal{rehearsal}.json").read_text()
        )
        (row,) = record["rows"]
        assert record["dataset"] == dataset and row["config"] == f"ur4rec-{dataset}"
        (full,) = [c for c in row["cases"] if c["protocol"] == "full"]
        chosen = full["ndcg@10"]["difference"]["mean"] > 0
        from_file = to_dict(load_config(root / "configs" / f"ur4rec-{dataset}-tuned.yaml"))
        default = to_dict(load_config(root / "configs" / f"ur4rec-{dataset}.yaml"))
        assert from_file["train"].pop("refit") is chosen, dataset
        assert default["train"].pop("refit") is False
        assert from_file == default, dataset
