"""Baselines fitted rather than trained (``pop``, ``ease``, ``text-knn``, ``rp3beta``), by their
table names.

EASE's lambda is chosen like any model's setting: on the validation part (full ranking,
NDCG@10), over ``EASE_L2_GRID``, with the model fitted on the training part only. Both
``ease`` (the whole history) and ``ease-recent`` (the last ``EASE_RECENT`` items) are tuned.
RP3beta's alpha and beta are chosen the same way, over ``RP3_ALPHA_GRID`` x ``RP3_BETA_GRID``.
"""

from __future__ import annotations

from collections.abc import Sequence

from ur4rec.config import EaseConfig, RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import Split, make_split, with_validation_targets
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator, Scorer
from ur4rec.measures import SAMPLED_99
from ur4rec.models import ModelInputs, build_model
from ur4rec.models.baselines import EASE
from ur4rec.models.cooccurrence import RP3beta
from ur4rec.models.ease import ease_from_gram, ease_gram
from ur4rec.models.text_knn import TextKNN

BASELINES = ("pop", "ease", "ease-recent", "text-knn", "rp3beta")
ID_BASELINES = ("pop", "ease", "ease-recent")  # quickstart's table: no text encoder, seconds
# How many of the last items ease-recent reads: chosen on ml-100k-liked's validation split by
# benchmarks/baselines.py, which prints the sweep over it.
EASE_RECENT = 3
EASE_L2_GRID = (5.0, 10.0, 25.0, 50.0, 100.0, 150.0, 250.0, 500.0, 1000.0, 2000.0, 5000.0, 10000.0)
RP3_ALPHA_GRID = (0.25, 0.5, 0.75, 1.0)
RP3_BETA_GRID = (0.0, 0.25, 0.5, 0.75)
TUNE_METRIC = "ndcg@10"


def ease_sweep(
    dataset: Dataset,
    split: Split,
    recent: int = 0,
    grid: Sequence[float] = EASE_L2_GRID,
    metric: str = TUNE_METRIC,
) -> list[dict[str, float]]:
    """Validation ``metric`` (full ranking) of EASE fitted on the training part, per lambda."""
    if not grid:
        raise Ur4recError("the EASE lambda grid is empty")
    gram = ease_gram(dataset, split.train)
    valid = Evaluator(dataset, split, "valid", "full")
    rows = []
    for l2 in grid:
        model = EASE(ease_from_gram(gram, float(l2)), recent, l2=float(l2))
        rows.append({"lambda": float(l2), metric: float(valid.evaluate(model)[metric])})
    return rows


def tune_ease_l2(
    dataset: Dataset, split: Split, recent: int = 0, grid: Sequence[float] = EASE_L2_GRID
) -> float:
    """The lambda with the best validation NDCG@10 (the smallest one among ties)."""
    rows = ease_sweep(dataset, split, recent, grid)
    best = max(rows, key=lambda r: (r[TUNE_METRIC], -r["lambda"]))
    return best["lambda"]


def rp3beta_sweep(
    dataset: Dataset,
    split: Split,
    alphas: Sequence[float] = RP3_ALPHA_GRID,
    betas: Sequence[float] = RP3_BETA_GRID,
    metric: str = TUNE_METRIC,
    recent: int = 0,
) -> list[dict[str, float]]:
    """Validation ``metric`` (full ranking) of RP3beta fitted on the training part, per
    (alpha, beta), with the default ``rp3beta.top``, reading the last ``recent`` items
    (0: the whole history), as the model it chooses for will."""
    if not alphas or not betas:
        raise Ur4recError("the RP3beta alpha or beta grid is empty")
    valid = Evaluator(dataset, split, "valid", "full")
    rows = []
    for alpha in alphas:
        for beta in betas:
            cfg = RunConfig()
            cfg.model.name = "rp3beta"
            cfg.rp3beta.alpha, cfg.rp3beta.beta = float(alpha), float(beta)
            cfg.rp3beta.recent = recent
            model = build_model(ModelInputs(cfg, dataset, split.train))
            score = float(valid.evaluate(model)[metric])
            rows.append({"alpha": float(alpha), "beta": float(beta), metric: score})
    return rows


def best_rp3beta(rows: Sequence[dict[str, float]]) -> tuple[float, float]:
    """The (alpha, beta) of ``rp3beta_sweep`` rows with the best NDCG@10 (ties: the smallest
    alpha, then beta)."""
    if not rows:
        raise Ur4recError("no RP3beta sweep rows to choose from")
    best = max(rows, key=lambda r: (r[TUNE_METRIC], -r["alpha"], -r["beta"]))
    return best["alpha"], best["beta"]


def tune_rp3beta(
    dataset: Dataset,
    split: Split,
    alpha: float | None = None,
    beta: float | None = None,
    recent: int = 0,
) -> tuple[float, float]:
    """(alpha, beta) with the best validation NDCG@10 over the grids, a given one held fixed,
    for a model reading the last ``recent`` items (0: all)."""
    alphas = RP3_ALPHA_GRID if alpha is None else (alpha,)
    betas = RP3_BETA_GRID if beta is None else (beta,)
    return best_rp3beta(rp3beta_sweep(dataset, split, alphas, betas, recent=recent))


def build_baseline(
    name: str,
    dataset: Dataset,
    split: Split,
    l2: float | None = None,
    recent: int | None = None,
    root: str | None = None,
    item_texts: str = "template",
    seen_items: str = "auto",
    refit: bool = False,
    alpha: float | None = None,
    beta: float | None = None,
) -> Scorer:
    """The baseline fitted on ``split``'s training part. ``l2``: EASE's lambda (None: tuned
    on the validation part); ``recent``: how many of the last items EASE, text-kNN or RP3beta
    reads (0: all; default: 0 for ``ease`` and ``rp3beta``, EASE_RECENT for ``ease-recent``,
    5 for ``text-knn``), tuned with that window;
    ``item_texts``: text-kNN's item texts (template or a file); ``root``: the data folder;
    ``seen_items``: ``model.seen_items`` (the user's own items under sampled-with-history);
    ``refit``: fitted on the training part plus the validation targets, as a refit run is
    (train/refit.py), once validation has chosen lambda; ``alpha``, ``beta``: RP3beta's
    (None: chosen on the validation part)."""
    if name not in BASELINES:
        raise Ur4recError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")
    cfg = RunConfig()
    cfg.model.seen_items = seen_items  # type: ignore[assignment]  # checked by build_model
    texts = None
    if name == "pop":
        cfg.model.name = "pop"
    elif name == "text-knn":
        from ur4rec.text.features import text_features

        cfg.model.name = "text-knn"
        cfg.data.dataset, cfg.data.scheme = dataset.name, split.scheme
        cfg.text.item_texts = item_texts
        if recent is not None:
            cfg.text_knn.recent = recent
        texts = text_features(cfg, dataset, root)
    elif name == "rp3beta":
        recent = 0 if recent is None else recent
        if alpha is None or beta is None:
            alpha, beta = tune_rp3beta(dataset, split, alpha, beta, recent)
        cfg.model.name = "rp3beta"
        cfg.rp3beta.alpha, cfg.rp3beta.beta = alpha, beta
        cfg.rp3beta.recent = recent
    else:
        default = EASE_RECENT if name == "ease-recent" else 0
        recent = default if recent is None else recent
        if l2 is None:
            l2 = tune_ease_l2(dataset, split, recent)
        cfg.model.name = "ease"
        cfg.ease = EaseConfig(l2=l2, recent=recent)
    train = with_validation_targets(dataset, split) if refit else split.train
    return build_model(ModelInputs(cfg, dataset, train, texts=texts))


def describe_baseline(model: Scorer) -> dict[str, object]:
    """The settings a baseline row reports (EASE's lambda and window)."""
    if isinstance(model, EASE):
        return {"lambda": model.l2, "recent": model.recent}
    if isinstance(model, TextKNN):
        return {"recent": model.recent}
    if isinstance(model, RP3beta):
        return {"alpha": model.alpha, "beta": model.beta, "recent": model.recent}
    return {}


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
        models = {m: build_baseline(m, dataset, split) for m in ID_BASELINES}
        for protocol in protocols:
            evaluator = Evaluator(dataset, split, part, protocol)
            for model_name, model in models.items():
                rows.append(
                    {"model": model_name, **evaluator.evaluate(model), **describe_baseline(model)}
                )
    return rows
