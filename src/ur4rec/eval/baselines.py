"""Non-sequential baselines (the ``pop`` and ``ease`` models), by their table names."""

from __future__ import annotations

from collections.abc import Sequence

from ur4rec.config import EaseConfig, RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import Prefixes, make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator, Scorer
from ur4rec.measures import SAMPLED_99
from ur4rec.models import ModelInputs, build_model

BASELINES = ("pop", "ease", "ease-recent")
# EASE over each user's last 3 items, lambda 500: chosen on ml-100k-liked's validation split
# (benchmarks/ease_recent.py), where it matches SASRec under full ranking.
EASE_RECENT = 3


def build_baseline(
    name: str, dataset: Dataset, train: Prefixes, l2: float = 500.0, recent: int | None = None
) -> Scorer:
    """``recent``: how many of the last items EASE reads (0: all; default: 0 for ``ease``,
    EASE_RECENT for ``ease-recent``)."""
    if name not in BASELINES:
        raise Ur4recError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    cfg = RunConfig()
    if name == "pop":
        cfg.model.name = "pop"
    else:
        default = EASE_RECENT if name == "ease-recent" else 0
        cfg.model.name = "ease"
        cfg.ease = EaseConfig(l2=l2, recent=default if recent is None else recent)
    return build_model(ModelInputs(cfg, dataset, train))


def baseline_table(
    datasets: Sequence[str],
    protocols: Sequence[str] = ("full", SAMPLED_99),
    part: str = "test",
    root: str | None = None,
) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for name in datasets:
        dataset = open_dataset(name, root=root)
        split = make_split(dataset)
        models = {m: build_baseline(m, dataset, split.train) for m in BASELINES}
        for protocol in protocols:
            evaluator = Evaluator(dataset, split, part, protocol)
            for model_name, model in models.items():
                rows.append({"model": model_name, **evaluator.evaluate(model)})
    return rows
