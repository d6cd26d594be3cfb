"""Typed run configuration: dataclasses loaded from YAML, with ``key=value`` overrides.

Unknown keys and wrong types are errors that name the key, e.g. ``train.lr: expected float,
got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ur4rec.errors import Ur4recError


class ConfigError(Ur4recError):
    """A configuration file or override is invalid."""


@dataclass
class DataConfig:
    dataset: str = "ml-100k"
    scheme: Literal["leave-one-out", "ratio"] = "leave-one-out"
    max_len: int = 50  # most recent items a model reads


@dataclass
class ModelConfig:
    name: Literal["sasrec", "ur4rec"] = "sasrec"
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256  # feed-forward width
    dropout: float = 0.2  # embedding and residual dropout
    attn_dropout: float = 0.2
    norm: Literal["pre", "post"] = "pre"


@dataclass
class LossConfig:
    kind: Literal["ce", "bce", "sampled_softmax"] = "ce"
    negatives: int = 1  # per position for bce; per batch for sampled_softmax
    sampler: Literal["uniform", "popularity"] = "uniform"


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128  # windows per batch
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"
    clip_norm: float = 1.0  # per parameter group; 0 disables
    patience: int = 10  # epochs without improvement before stopping; 0 disables
    metric: str = "ndcg@10"
    eval_protocol: str = "full"
    eval_every: int = 1
    tensorboard: bool = False


@dataclass
class TextConfig:
    """Where the retriever's texts come from; every path is a JSON file keyed by raw id."""

    item_texts: str = "template"  # template, or a file (missing ids get the template)
    # template (training part only), template-aspects (the same without titles), or a file
    # (audited first)
    user_texts: str = "template"
    encoder: str = "all-MiniLM-L6-v2"
    trainable_layers: int = 0  # >0: the last N encoder layers train on user texts (slow)
    # >0: in training, each position reads a user text written from the items before its
    # target (rewritten every N training items), as evaluation does; 0: one text per user from
    # the whole training part, which describes (and may name) later training targets.
    # Template user texts only.
    user_text_every: int = 0
    audit: bool = True  # refuse user texts that the leakage audit flags


@dataclass
class RetrieverConfig:
    dim: int = 256  # output dimension (the report: 256, option 512)
    experts: int = 4
    proxies: int = 4  # learned proxy tokens the user query attends to
    router: Literal["dense", "topk"] = "dense"
    top_k: int = 2
    item_ids: bool = True  # add an item ID embedding to the text projection
    sequence: bool = True  # attention-pool the user's recent training items
    preference_text: bool = True
    temperature: float = 0.07
    load_balance: float = 0.01
    dropout: float = 0.1
    loss: Literal["full", "in_batch", "mined"] = "full"
    negatives: int = 64  # mined: hardest items per position, plus as many uniform ones
    rerank_top: int = 0  # >0: a co-attention scorer reranks the top N


@dataclass
class MemoryConfig:
    enabled: bool = False


@dataclass
class FusionConfig:
    method: Literal["fixed", "scalar", "gate", "curriculum", "uncertainty"] = "gate"
    sasrec_weight: float = 0.4  # fixed weight; start of the learned ones; curriculum's end
    curriculum_start: float = 0.9  # curriculum: SASRec's weight at the start of a stage
    aux_weight: float = 0.5  # weight of each branch's own loss in joint stages
    # fixed/scalar: after each fused stage, pick SASRec's weight on the validation split
    # (grid 0, 0.05, ..., 1): learned on training data the weight over-trusts the branch
    # that overfits more.
    calibrate: bool = True
    sasrec_text_features: bool = False  # feed item text embeddings into SASRec too
    # A third branch that does not train: EASE fitted in closed form on the training part,
    # reading each user's last `prior_recent` items. It joins at scoring time only (at a
    # training position it has already seen the answer), with weight `prior_weight`, which
    # fixed/scalar fusion calibrates on validation together with SASRec's weight.
    prior: Literal["none", "ease"] = "none"
    prior_recent: int = 3
    prior_l2: float = 500.0
    prior_weight: float = 0.0


@dataclass
class StageConfig:
    name: str = "stage"
    epochs: int = 50
    train: list[str] = field(default_factory=lambda: ["sasrec"])  # modules that learn
    lr: dict[str, float] = field(default_factory=dict)  # per module; default train.lr
    clip: dict[str, float] = field(default_factory=dict)  # per module; default train.clip_norm
    patience: int = 10
    metric: str = "ndcg@10"
    objective: Literal["sasrec", "retriever", "fused"] = "fused"  # what is trained and scored


def default_stages() -> list[StageConfig]:
    """The report's four stages."""
    return [
        StageConfig("pretrain_sasrec", 200, ["sasrec"], objective="sasrec"),
        StageConfig("pretrain_retriever", 200, ["retriever", "memory"], objective="retriever"),
        StageConfig(
            "joint_finetune", 30, ["sasrec", "retriever", "memory", "fusion"],
            lr={"sasrec": 1e-4, "retriever": 3e-4, "memory": 3e-4, "fusion": 1e-3}, patience=5,
        ),
        StageConfig(
            "end_to_end", 30, ["sasrec", "retriever", "memory", "fusion", "text_encoder"],
            lr={"sasrec": 5e-5, "retriever": 1e-4, "memory": 1e-4, "fusion": 5e-4,
                "text_encoder": 1e-5},
            patience=5,
        ),
    ]  # fmt: skip


@dataclass
class RunConfig:
    seed: int = 42
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    text: TextConfig = field(default_factory=TextConfig)
    retriever: RetrieverConfig = field(default_factory=RetrieverConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    fusion: FusionConfig = field(default_factory=FusionConfig)
    stages: list[StageConfig] = field(default_factory=default_stages)


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return from_dict(tp, value, prefix=f"{key}.")
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {list(choices)}, got {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _convert(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0])
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, value_type = typing.get_args(tp) or (str, Any)
        return {str(k): _convert(v, value_type, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(tp) or (Any,)
        items = [_convert(v, item_type, f"{key}[{i}]") for i, v in enumerate(value)]
        return items if origin is list else tuple(items)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp in (int, float) and isinstance(value, bool):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if tp in (int, float, str) and not isinstance(value, tp):
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    return value


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in data if k not in names]
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}'; known keys here: {', '.join(names)}"
        )
    kwargs = {k: _convert(v, hints[k], f"{prefix}{k}") for k, v in data.items()}
    return cls(**kwargs)


def to_dict(obj: Any) -> dict[str, Any]:
    return dataclasses.asdict(obj)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides; values are parsed as YAML (``1e-3``, ``true``, ``[1,2]``)."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like key=value")
        try:
            value = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"override {item!r}: value is not valid YAML ({exc})") from None
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[parts[-1]] = value
    return data


def _looks_numeric(text: str) -> bool:
    # YAML 1.1 reads "1e-3" as a string; a config means a number.
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return _numbers(data)


def _numbers(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _numbers(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_numbers(v) for v in node]
    if isinstance(node, str) and _looks_numeric(node) and "e" in node.lower():
        return float(node)
    return node


def load_config(
    path: str | Path | None = None, overrides: list[str] | None = None, cls: type = RunConfig
) -> Any:
    data = read_yaml(path) if path is not None else {}
    return from_dict(cls, apply_overrides(data, list(overrides or [])))


def dump_config(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
