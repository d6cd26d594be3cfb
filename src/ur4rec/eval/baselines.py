"""Non-sequential baselines, scored through the same evaluator as every model."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import PAD, Prefixes, interaction_counts, make_split, prefix_mask
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator, HistoryBatch, Scorer

BASELINES = ("pop", "ease")


class Popularity:
    """Scores every item by how often it occurs in the training part."""

    def __init__(self, dataset: Dataset, train: Prefixes) -> None:
        self.counts = torch.from_numpy(interaction_counts(dataset, train)).to(torch.float32)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.counts.expand(len(batch.users), -1).clone()


class EASE:
    """EASE (Steck, 2019): a closed-form item-item model, B = I - P / diag(P) with
    P = (X^T X + lambda I)^-1 and a zero diagonal; a user's scores are x_history @ B."""

    def __init__(self, dataset: Dataset, train: Prefixes, l2: float = 500.0) -> None:
        n_items = dataset.n_items
        mask = prefix_mask(dataset, train)
        users = np.repeat(np.arange(dataset.n_users), dataset.lengths)[mask]
        x = torch.zeros(dataset.n_users, n_items, dtype=torch.float64)
        x[torch.from_numpy(users), torch.from_numpy(dataset.item[mask])] = 1.0
        gram = x.T @ x
        gram.diagonal().add_(l2)
        precision = torch.linalg.inv(gram)
        weights = -precision / precision.diagonal()[None, :]
        weights.diagonal().zero_()
        self.weights = weights.to(torch.float32)
        self.n_items = n_items

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        history = torch.zeros(len(batch.users), self.n_items)
        row, col = torch.nonzero(batch.items != PAD, as_tuple=True)
        history[row, batch.items[row, col]] = 1.0
        return history @ self.weights


def build_baseline(name: str, dataset: Dataset, train: Prefixes, l2: float = 500.0) -> Scorer:
    if name == "pop":
        return Popularity(dataset, train)
    if name == "ease":
        return EASE(dataset, train, l2=l2)
    raise Ur4recError(f"unknown baseline {name!r}; known: {', '.join(BASELINES)}")


def baseline_table(
    datasets: Sequence[str],
    protocols: Sequence[str] = ("full", "seed"),
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
