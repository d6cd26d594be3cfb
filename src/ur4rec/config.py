"""Typed run configuration: dataclasses loaded from YAML, with ``key=value`` overrides.

Unknown keys and wrong types are errors that name the key, e.g. ``train.lr: expected float,
got 'fast'``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from ur4rec.errors import Ur4recError
from ur4rec.measures import PROTOCOL_NAMES, metric_ok, protocol_ok, scheme_ok


class ConfigError(Ur4recError):
    """A configuration file or override is invalid."""


@dataclass
class DataConfig:
    dataset: str = "ml-100k"
    # leave-one-out, ratio, cold-items[:SHARE], cold-time[:QUANTILE], rehearsal (data/splits.py)
    scheme: str = "leave-one-out"
    max_len: int = 50  # most recent items a model reads


@dataclass
class ModelConfig:
    name: str = "sasrec"  # a registered model: sasrec, gru4rec, ur4rec, pop, ease
    backbone: str = "sasrec"  # ur4rec: its ID-based sequential model (sasrec or gru4rec)
    hidden: int = 64
    layers: int = 2
    heads: int = 2
    inner: int = 256  # feed-forward width
    dropout: float = 0.2  # embedding and residual dropout
    attn_dropout: float = 0.2
    norm: Literal["pre", "post"] = "pre"
    # With item text features (sasrec-content; UR4Rec's SASRec with sasrec_text_features): an
    # item's ID vector may be at most this many times as long as its content vector; 0: any.
    id_residual: float = 0.0
    # In training, each trained item's ID vector is dropped with this probability at every
    # step, so the model also learns to rank from content alone, as it must for new items
    # (DropoutNet, Volkovs et al. 2017). Needs item text features.
    id_dropout: float = 0.0
    # Under sampled-with-history:N, whose candidates may be the user's own items: ``last``
    # ranks them below the target (what full ranking does by leaving history out), ``keep``
    # scores them as the model does, ``auto`` is ``last`` unless the training data repeats
    # items (a user consuming an item again).
    seen_items: Literal["auto", "last", "keep"] = "auto"


@dataclass
class LossConfig:
    kind: Literal["ce", "bce", "sampled_softmax"] = "ce"
    negatives: int = 1  # per position for bce; per batch for sampled_softmax
    sampler: Literal["uniform", "popularity"] = "uniform"
    # sampled_softmax: as many negatives again drawn from the batch's own targets (mixed
    # negative sampling), every logit corrected by the log of its expected count.
    in_batch: bool = False
    # Logit adjustment (Menon et al., ICLR 2021): every full-softmax training logit gets
    # tau x log(the item's share of training interactions) added and scoring leaves it out, so
    # the model does not spend its scores on popularity and rare items are not buried.
    # 0: off. UR4Rec applies it to each of its full softmaxes (needs retriever.loss full).
    logit_adjust: float = 0.0


@dataclass
class TrainConfig:
    epochs: int = 200
    batch_size: int = 128  # windows per batch
    lr: float = 1e-3
    weight_decay: float = 0.0
    warmup_epochs: float = 1.0
    schedule: Literal["cosine", "constant"] = "cosine"
    # bfloat16: the training forward pass under autocast (products in bfloat16, weights,
    # optimiser and evaluation in float32); faster on CPUs with bfloat16 dot products.
    precision: Literal["float32", "bfloat16"] = "float32"
    # Where training runs: cpu, cuda (under torchrun: each process's own GPU), cuda:N, or
    # auto (cuda when torch sees one). Evaluation, serving and reports stay on the CPU.
    device: str = "cpu"
    clip_norm: float = 1.0  # per parameter group; 0 disables
    patience: int = 10  # epochs without improvement before stopping; 0 disables
    metric: str = "ndcg@10"
    eval_protocol: str = "full"
    eval_every: int = 1
    tensorboard: bool = False
    # After the run, train it again on the training part plus the validation targets for the
    # epochs validation chose, and test that model (train/refit.py); validation stays the
    # chosen checkpoint's. Not with cold-time, whose validation inputs pass the time cut.
    refit: bool = False


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
    dim: int = 256  # output dimension of both towers
    experts: int = 4
    proxies: int = 4  # learned proxy tokens the user query attends to
    router: Literal["dense", "topk"] = "dense"
    top_k: int = 2
    item_ids: bool = True  # add an item ID embedding to the text projection
    id_dropout: float = 0.0  # training: drop each item's ID vector with this probability
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
    method: Literal["fixed", "scalar", "gate", "curriculum", "uncertainty"] = "scalar"
    sasrec_weight: float = 0.4  # fixed weight; start of the learned ones; curriculum's end
    curriculum_start: float = 0.9  # curriculum: SASRec's weight at the start of a stage
    aux_weight: float = 0.5  # weight of each branch's own loss in joint stages
    # fixed/scalar: after each fused stage, pick SASRec's weight on the validation split
    # (grid 0, 0.05, ..., 1): learned on training data the weight over-trusts the branch
    # that overfits more.
    calibrate: bool = True
    sasrec_text_features: bool = True  # feed item text embeddings into SASRec too
    # A third branch that does not train: EASE fitted in closed form on the training part,
    # reading each user's last `prior_recent` items. It joins at scoring time only (at a
    # training position it has already seen the answer), with weight `prior_weight`, which
    # fixed/scalar fusion calibrates on validation together with SASRec's weight.
    prior: Literal["none", "ease"] = "none"
    prior_recent: int = 3
    prior_l2: float = 500.0
    prior_weight: float = 0.0
    # Another branch that does not train: RP3beta item-item co-occurrence over the training
    # part (models/cooccurrence.py), which reaches rare items that ID embeddings learn poorly.
    # At scoring time it adds cooccurrence_weight x its per-user z-score to every item, and
    # to rare items (1 to rare_below - 1 training interactions) rare_weight x the same
    # z-score plus rare_bonus. Fixed/scalar fusion calibrates the three on validation after
    # SASRec's and the prior's weights (models/ur4rec.py).
    cooccurrence: Literal["none", "rp3beta"] = "none"
    cooccurrence_alpha: float = 0.5
    cooccurrence_beta: float = 0.5
    cooccurrence_top: int = 200
    cooccurrence_recent: int = 200  # the user's last N items it reads (beyond data.max_len)
    cooccurrence_weight: float = 0.0
    rare_weight: float = 0.0
    rare_bonus: float = 0.0
    rare_below: int = 20


@dataclass
class EaseConfig:
    """The ``ease`` model (the EASE prior inside UR4Rec has its own keys under fusion)."""

    l2: float = 500.0
    recent: int = 0  # >0: read only each user's last N items


@dataclass
class TextKnnConfig:
    """The ``text-knn`` model."""

    recent: int = 5  # the user's last N items' texts (0: the whole history)


@dataclass
class Rp3betaConfig:
    """The ``rp3beta`` model (the co-occurrence branch inside UR4Rec has its own keys under
    fusion)."""

    alpha: float = 0.5  # the two-step walk's probabilities raised to alpha
    beta: float = 0.5  # divided by the reached item's popularity^beta
    top: int = 200  # neighbours kept per item
    recent: int = 0  # >0: read only each user's last N items


@dataclass
class StageConfig:
    name: str = "stage"
    epochs: int = 50
    train: list[str] = field(default_factory=lambda: ["sasrec"])  # modules that learn
    lr: dict[str, float] = field(default_factory=dict)  # per module; default train.lr
    clip: dict[str, float] = field(default_factory=dict)  # per module; default train.clip_norm
    patience: int = 10
    metric: str = "ndcg@10"
    # What is trained and scored (the model's objectives; empty: the model's default).
    objective: str = ""


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
    ease: EaseConfig = field(default_factory=EaseConfig)
    text_knn: TextKnnConfig = field(default_factory=TextKnnConfig)
    rp3beta: Rp3betaConfig = field(default_factory=Rp3betaConfig)
    # Training in stages (each trains some modules under an objective); none: one plain run.
    stages: list[StageConfig] = field(default_factory=list)


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
        _check_size(value, f"override {key!r}")
        if isinstance(value, str) and _looks_numeric(value):
            value = float(value)
        value = _numbers(value)  # "1e-05" inside a list or mapping is a number too
        node: Any = data
        parts = key.split(".")
        for part in parts[:-1]:
            node = _child(node, part, item)
            if not isinstance(node, dict | list):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        if isinstance(node, list):
            node[_position(node, parts[-1], item)] = value
        else:
            node[parts[-1]] = value
    return data


def _child(node: dict[str, Any] | list[Any], part: str, item: str) -> Any:
    """A section, or an entry of a list (``stages.2`` or by name, ``stages.joint_finetune``)."""
    if isinstance(node, list):
        return node[_position(node, part, item)]
    return node.setdefault(part, {})


def _position(node: list[Any], part: str, item: str) -> int:
    if part.isdigit() and int(part) < len(node):
        return int(part)
    named = [
        i for i, entry in enumerate(node) if isinstance(entry, dict) and entry.get("name") == part
    ]
    if len(named) == 1:
        return named[0]
    raise ConfigError(
        f"override {item!r}: '{part}' is neither an index (0-{len(node) - 1}) nor the name of "
        "one entry of the list"
    )


def _looks_numeric(text: str) -> bool:
    # YAML 1.1 reads "1e-3" as a string; a config means a number.
    try:
        float(text)
    except ValueError:
        return False
    return True


MAX_CONFIG_BYTES = 1 << 20
MAX_CONFIG_VALUES = 100_000  # after YAML aliases are expanded


def _check_size(data: Any, where: str) -> None:
    """Refuse a document that expands into too many values: YAML aliases can nest into
    billions of them (an "alias bomb") while the file stays a few lines long."""
    count, todo = 0, [data]
    while todo:
        node = todo.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{where}: expands to more than {MAX_CONFIG_VALUES} values (nested YAML "
                "aliases?); a run config is far smaller"
            )
        if isinstance(node, dict):
            todo.extend(node.values())
        elif isinstance(node, list):
            todo.extend(node)


def read_yaml(path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A config file as a mapping. ``include: FILE`` (or a list of files, relative to this
    one) reads those first; this file's keys then override theirs, section by section."""
    path = Path(path)
    data = _read_one(path)
    includes = data.pop("include", [])
    if isinstance(includes, str):
        includes = [includes]
    if not isinstance(includes, list) or not all(isinstance(i, str) for i in includes):
        raise ConfigError(f"{path}: include must be a file name or a list of them")
    merged: dict[str, Any] = {}
    for name in includes:
        target = (path.parent / name).resolve()
        if target in _seen or target == path.resolve():
            raise ConfigError(f"{path}: include {name!r} includes itself")
        merged = _merge(merged, read_yaml(target, (*_seen, path.resolve())))
    return _merge(merged, data)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value  # lists (e.g. stages) and values are replaced whole
    return out


def _read_one(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: over {MAX_CONFIG_BYTES} bytes; not a run config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    _check_size(data, str(path))
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
    """A typed config from a YAML file and overrides; a RunConfig is range-checked too, so no
    training ever starts on a value that cannot work."""
    data = read_yaml(path) if path is not None else {}
    config = from_dict(cls, apply_overrides(data, list(overrides or [])))
    if isinstance(config, RunConfig):
        _check_stage_shadowed(config, list(overrides or []))
        validate(config)
    return config


# What each stage sets for itself: on a staged config the train section's value is not read.
_STAGE_SHADOWED = ("epochs", "patience", "metric")


def _check_stage_shadowed(config: RunConfig, overrides: list[str]) -> None:
    """An override of ``train.epochs`` (patience, metric) on a staged config would change
    nothing: say so rather than train as if it had."""
    if not config.stages:
        return
    for item in overrides:
        key = item.partition("=")[0].strip()
        section, _, name = key.partition(".")
        if section == "train" and name in _STAGE_SHADOWED:
            raise ConfigError(
                f"{key} has no effect on a config with stages (each stage sets its own {name}): "
                f"override it per stage, e.g. stages.{config.stages[0].name}.{name}=..."
            )


def _check(problems: list[str], ok: bool, key: str, rule: str, value: Any) -> None:
    if not ok:
        problems.append(f"{key}: must be {rule}, got {value!r}")


def _finite(value: float) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def device_ok(spec: str) -> bool:
    return bool(re.fullmatch(r"cpu|auto|cuda(:\d+)?", spec))


def validate(cfg: RunConfig) -> None:
    """Range checks on every value a run reads; raises ConfigError naming each bad key."""
    p: list[str] = []
    d, m, lo, t, tx, r, f = (
        cfg.data,
        cfg.model,
        cfg.loss,
        cfg.train,
        cfg.text,
        cfg.retriever,
        cfg.fusion,
    )
    _check(p, 0 <= cfg.seed < 2**63, "seed", "between 0 and 2**63 - 1", cfg.seed)
    _check(p, bool(d.dataset.strip()), "data.dataset", "a dataset name", d.dataset)
    _check(p, d.max_len >= 1, "data.max_len", ">= 1", d.max_len)
    schemes = "leave-one-out, ratio, cold-items[:SHARE], cold-time[:QUANTILE] or rehearsal"
    _check(p, scheme_ok(d.scheme), "data.scheme", schemes, d.scheme)
    for key in ("hidden", "layers", "heads", "inner"):
        _check(p, getattr(m, key) >= 1, f"model.{key}", ">= 1", getattr(m, key))
    if m.heads >= 1 and m.hidden % m.heads:
        p.append(f"model.hidden: must be divisible by model.heads ({m.heads}), got {m.hidden}")
    for key in ("dropout", "attn_dropout"):
        value = getattr(m, key)
        _check(p, _finite(value) and 0 <= value < 1, f"model.{key}", "in [0, 1)", value)
    _check(p, _finite(m.id_residual) and m.id_residual >= 0, "model.id_residual",
           "a finite number >= 0 (0: unbounded)", m.id_residual)  # fmt: skip
    _check(p, _finite(m.id_dropout) and 0 <= m.id_dropout < 1, "model.id_dropout",
           "a probability in [0, 1)", m.id_dropout)  # fmt: skip
    _check(p, lo.negatives >= 1, "loss.negatives", ">= 1", lo.negatives)
    _check(p, _finite(lo.logit_adjust) and lo.logit_adjust >= 0, "loss.logit_adjust",
           "a finite number >= 0 (0: off)", lo.logit_adjust)  # fmt: skip
    if lo.logit_adjust > 0 and lo.kind != "ce":
        p.append(f"loss.logit_adjust: needs loss.kind ce (a full softmax), got {lo.kind!r}")
    if lo.logit_adjust > 0 and m.name == "ur4rec" and r.loss != "full":
        p.append(f"loss.logit_adjust: needs retriever.loss full for ur4rec, got {r.loss!r}")
    if t.refit and d.scheme.startswith("cold-time"):
        p.append(
            "train.refit: cold-time validates on inputs past the time cut, which a refit would "
            "have to train on; use it with leave-one-out, ratio, cold-items or rehearsal"
        )
    _check(p, t.epochs >= 1, "train.epochs", ">= 1", t.epochs)
    _check(p, t.batch_size >= 1, "train.batch_size", ">= 1", t.batch_size)
    _check(p, _finite(t.lr) and t.lr > 0, "train.lr", "a finite number > 0", t.lr)
    for key in ("weight_decay", "warmup_epochs", "clip_norm"):
        value = getattr(t, key)
        _check(p, _finite(value) and value >= 0, f"train.{key}", "a finite number >= 0", value)
    _check(p, t.patience >= 0, "train.patience", ">= 0 (0 disables)", t.patience)
    _check(p, t.eval_every >= 1, "train.eval_every", ">= 1", t.eval_every)
    _check(p, device_ok(t.device), "train.device", "cpu, cuda, cuda:N or auto", t.device)
    metric_rule = "one of hit/ndcg/mrr @ 5/10/20, e.g. ndcg@10"
    _check(p, metric_ok(t.metric), "train.metric", metric_rule, t.metric)
    _check(p, protocol_ok(t.eval_protocol), "train.eval_protocol",
           PROTOCOL_NAMES, t.eval_protocol)  # fmt: skip
    _check(p, tx.trainable_layers >= 0, "text.trainable_layers", ">= 0", tx.trainable_layers)
    _check(p, tx.user_text_every >= 0, "text.user_text_every", ">= 0", tx.user_text_every)
    for key in ("dim", "experts", "negatives"):
        _check(p, getattr(r, key) >= 1, f"retriever.{key}", ">= 1", getattr(r, key))
    _check(p, r.proxies >= 0, "retriever.proxies", ">= 0", r.proxies)
    _check(p, r.rerank_top >= 0, "retriever.rerank_top", ">= 0 (0 disables)", r.rerank_top)
    if r.router == "topk":  # a dense router reads no top_k
        _check(p, 1 <= r.top_k <= max(r.experts, 1), "retriever.top_k",
               f"between 1 and retriever.experts ({r.experts})", r.top_k)  # fmt: skip
    _check(p, _finite(r.temperature) and r.temperature > 0, "retriever.temperature",
           "a finite number > 0", r.temperature)  # fmt: skip
    _check(p, _finite(r.load_balance) and r.load_balance >= 0, "retriever.load_balance",
           "a finite number >= 0", r.load_balance)  # fmt: skip
    _check(p, _finite(r.dropout) and 0 <= r.dropout < 1, "retriever.dropout", "in [0, 1)",
           r.dropout)  # fmt: skip
    _check(p, _finite(r.id_dropout) and 0 <= r.id_dropout < 1, "retriever.id_dropout",
           "a probability in [0, 1)", r.id_dropout)  # fmt: skip
    for key in ("sasrec_weight", "curriculum_start"):
        value = getattr(f, key)
        _check(p, _finite(value) and 0 <= value <= 1, f"fusion.{key}", "in [0, 1]", value)
    for key in ("aux_weight", "prior_weight", "cooccurrence_weight", "rare_weight", "rare_bonus",
                "cooccurrence_beta"):  # fmt: skip
        value = getattr(f, key)
        _check(p, _finite(value) and value >= 0, f"fusion.{key}", "a finite number >= 0", value)
    _check(p, f.prior_recent >= 0, "fusion.prior_recent", ">= 0 (0: whole history)",
           f.prior_recent)  # fmt: skip
    _check(p, _finite(f.prior_l2) and f.prior_l2 > 0, "fusion.prior_l2", "a finite number > 0",
           f.prior_l2)  # fmt: skip
    _check(p, _finite(f.cooccurrence_alpha) and f.cooccurrence_alpha > 0,
           "fusion.cooccurrence_alpha", "a finite number > 0", f.cooccurrence_alpha)  # fmt: skip
    _check(p, f.cooccurrence_top >= 1, "fusion.cooccurrence_top", ">= 1", f.cooccurrence_top)
    _check(p, f.cooccurrence_recent >= 1, "fusion.cooccurrence_recent", ">= 1",
           f.cooccurrence_recent)  # fmt: skip
    _check(p, f.rare_below >= 2, "fusion.rare_below", ">= 2", f.rare_below)
    _check(p, bool(m.name.strip()), "model.name", "a model name", m.name)
    _check(p, _finite(cfg.ease.l2) and cfg.ease.l2 > 0, "ease.l2", "a finite number > 0",
           cfg.ease.l2)  # fmt: skip
    _check(p, cfg.text_knn.recent >= 0, "text_knn.recent", ">= 0 (0: whole history)",
           cfg.text_knn.recent)  # fmt: skip
    _check(p, cfg.ease.recent >= 0, "ease.recent", ">= 0 (0: whole history)", cfg.ease.recent)
    r = cfg.rp3beta
    _check(p, _finite(r.alpha) and r.alpha > 0, "rp3beta.alpha", "a finite number > 0", r.alpha)
    _check(p, _finite(r.beta) and r.beta >= 0, "rp3beta.beta", "a finite number >= 0", r.beta)
    _check(p, r.top >= 1, "rp3beta.top", ">= 1", r.top)
    _check(p, r.recent >= 0, "rp3beta.recent", ">= 0 (0: whole history)", r.recent)
    for i, stage in enumerate(cfg.stages):
        key = f"stages[{i}] ({stage.name})"
        _check(p, stage.epochs >= 1, f"{key}.epochs", ">= 1", stage.epochs)
        _check(p, stage.patience >= 0, f"{key}.patience", ">= 0", stage.patience)
        _check(p, metric_ok(stage.metric), f"{key}.metric", metric_rule, stage.metric)
        # Which module names exist depends on the model: models.check_config checks them.
        _check(p, bool(stage.train), f"{key}.train", "a non-empty list of modules", stage.train)
        for table in ("lr", "clip"):
            for name, value in getattr(stage, table).items():
                # A stage lr of 0 is allowed: a stage that only calibrates the fusion uses it.
                ok = _finite(value) and value >= 0
                _check(p, ok, f"{key}.{table}.{name}", "a finite number >= 0", value)
    if p:
        more = f" (and {len(p) - 1} more: {'; '.join(p[1:])})" if len(p) > 1 else ""
        raise ConfigError(p[0] + more)


def dump_config(config: Any) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
