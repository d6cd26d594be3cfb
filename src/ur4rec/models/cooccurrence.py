"""RP3beta (Paudel et al., 2016): item-item co-occurrence that does not favour popular items.

A random walk item -> user -> item over the training part gives P[i, j], the chance of
reaching j from i in two steps (each step uniform over the edges). RP3beta raises it to the
power alpha and divides by popularity(j)^beta, so a rare item a user's items lead to is not
outranked by a popular one that everything leads to. Each row keeps its ``top`` largest
entries. A user's scores are the sum of the rows of the items in their history.

It needs no training and reaches rare items that ID embeddings learn poorly: on ml-100k-liked
it alone ranks targets with 1-19 training interactions better than text-kNN does, and inside
UR4Rec it is a scoring-time branch (fusion.cooccurrence) weighted on validation. Alone it is
the ``rp3beta`` model, a baseline (Dacrema et al., RecSys 2019, found it hard to beat) whose
memory is the neighbour lists, ``top`` per item, not EASE's dense item x item matrix.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ur4rec.config import RunConfig
from ur4rec.data.batches import HistoryBatch, last_items
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, Prefixes, prefix_mask
from ur4rec.errors import Ur4recError
from ur4rec.models.base import ModelInputs, register
from ur4rec.models.baselines import FittedModel

# Entries per block of rows while fitting (float64): a block is [rows, n_items] dense, with
# as many rows as fit in this, so memory stays near 256 MiB whatever the catalogue's size.
BLOCK_ENTRIES = 2**25
# Explanations compare items by cosine of their neighbour rows: exactly (dense rows) up to
# this many items, past it through a fixed random projection to ITEM_SPACE_DIM dimensions,
# which keeps cosines to about 1/sqrt(dim) and the memory at n x dim.
DENSE_ITEM_SPACE = 8192
ITEM_SPACE_DIM = 256


def rp3beta_neighbours(
    dataset: Dataset,
    train: Prefixes,
    alpha: float = 0.5,
    beta: float = 0.5,
    top: int = 200,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each item's ``top`` RP3beta neighbours over the ``train`` prefixes: (indices [n, k]
    long, weights [n, k] float32), k = min(top, n_items - 1). An item without training
    interactions has weight 0 everywhere (it leads nowhere)."""
    if alpha <= 0 or beta < 0 or top < 1:
        raise Ur4recError(
            f"rp3beta needs alpha > 0, beta >= 0 and top >= 1, got {alpha}, {beta}, {top}"
        )
    n_users, n_items = dataset.n_users, dataset.n_items
    mask = prefix_mask(dataset, train)
    users = np.repeat(np.arange(n_users), dataset.lengths)[mask]
    pairs = np.unique(np.stack([users, dataset.item[mask]]), axis=1)  # a repeat counts once
    u, i = torch.from_numpy(pairs[0]), torch.from_numpy(pairs[1])
    user_degree = torch.bincount(u, minlength=n_users).double()
    item_degree = torch.bincount(i, minlength=n_items).double()
    # item -> user (1 / item degree) then user -> item (1 / user degree).
    to_items = torch.sparse_coo_tensor(
        torch.stack([u, i]), 1.0 / user_degree[u], (n_users, n_items), check_invariants=True
    ).coalesce()
    k = min(top, n_items - 1)
    penalty = item_degree.clamp(min=1) ** beta
    indices = torch.zeros(n_items, max(k, 0), dtype=torch.long)
    weights = torch.zeros(n_items, max(k, 0))
    if k <= 0:
        return indices, weights
    block_rows = max(1, BLOCK_ENTRIES // n_items)
    for start in range(0, n_items, block_rows):
        rows = torch.arange(start, min(start + block_rows, n_items))
        inside = (i >= start) & (i < start + len(rows))
        by_item = torch.sparse_coo_tensor(  # the block's items -> their users
            torch.stack([i[inside] - start, u[inside]]),
            torch.ones(int(inside.sum()), dtype=torch.float64), (len(rows), n_users),
            check_invariants=True,
        )  # fmt: skip
        with warnings.catch_warnings():  # torch's "sparse CSR support is in beta" notice
            warnings.simplefilter("ignore", UserWarning)
            block = torch.sparse.mm(by_item, to_items).to_dense()
        block = block / item_degree[rows].clamp(min=1)[:, None]
        block = block.pow(alpha) / penalty[None, :]
        # An item is not its own neighbour, even where all it leads to weighs 0.
        block[torch.arange(len(rows)), rows] = float("-inf")
        value, index = block.topk(k, dim=1)
        indices[rows], weights[rows] = index, value.float()
    return indices, weights


def neighbour_scores(
    indices: torch.Tensor, weights: torch.Tensor, items: torch.Tensor, n_items: int
) -> torch.Tensor:
    """[B, n_items]: the sum of the neighbour rows of each left-padded history's items
    (``items`` [B, L]; an item repeated counts once, as in EASE). Items the rows do not cover
    (added after fitting) count for nothing in a history and score 0."""
    fitted = len(indices)
    history = torch.zeros(items.shape[0], fitted)
    row, col = torch.nonzero((items != PAD) & (items < fitted), as_tuple=True)
    history[row, items[row, col]] = 1.0
    rows, sources = torch.nonzero(history, as_tuple=True)
    scores = torch.zeros(items.shape[0], n_items)
    k = indices.shape[1]
    scores.index_put_(
        (rows[:, None].expand(-1, k), indices[sources]), weights[sources], accumulate=True
    )
    return scores


@register
class RP3beta(FittedModel):
    """RP3beta alone: a user's scores are the summed neighbour rows of their history's items
    (``recent`` > 0: of their last ``recent`` items only)."""

    name = "rp3beta"

    def __init__(
        self,
        indices: torch.Tensor,
        weights: torch.Tensor,
        recent: int = 0,
        alpha: float | None = None,
        beta: float | None = None,
    ) -> None:
        super().__init__()
        self.n_items = len(indices)
        self.recent = recent
        self.alpha, self.beta = alpha, beta  # what it was fitted with, for reports
        self.register_buffer("indices", indices)
        self.register_buffer("weights", weights)

    @classmethod
    def build(cls, inputs: ModelInputs) -> RP3beta:
        cfg = inputs.cfg.rp3beta
        n = inputs.dataset.n_items
        if inputs.saved is not None:  # the lists come with the checkpoint
            k = max(0, min(cfg.top, n - 1))
            empty = torch.zeros(n, k, dtype=torch.long), torch.zeros(n, k)
            return cls(*empty, cfg.recent, cfg.alpha, cfg.beta)
        indices, weights = rp3beta_neighbours(
            inputs.dataset, inputs.train, cfg.alpha, cfg.beta, cfg.top
        )
        return cls(indices, weights, cfg.recent, cfg.alpha, cfg.beta)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        items = batch.items if self.recent <= 0 else last_items(batch.items, self.recent)
        return neighbour_scores(self.indices, self.weights, items, self.n_items)

    def item_space(self) -> torch.Tensor:
        n, k = self.indices.shape
        rows = torch.arange(n).repeat_interleave(k)
        if n <= DENSE_ITEM_SPACE:
            dense = torch.zeros(n, n)
            dense[rows, self.indices.reshape(-1)] = self.weights.reshape(-1)
            return dense
        projection = torch.randn(n, ITEM_SPACE_DIM, generator=torch.Generator().manual_seed(0))
        sparse = torch.sparse_coo_tensor(
            torch.stack([rows, self.indices.reshape(-1)]),
            self.weights.reshape(-1),
            (n, n),
            check_invariants=True,
        )
        return torch.sparse.mm(sparse, projection)

    def describe_config(self, cfg: RunConfig) -> str:
        r = cfg.rp3beta
        window = f"the user's last {r.recent} items" if r.recent > 0 else "the whole history"
        return (
            f"RP3beta: item -> user -> item walks over the training part, raised to alpha "
            f"{r.alpha:g} and divided by the reached item's popularity^{r.beta:g}, the top "
            f"{r.top} neighbours per item, summed over {window}; nothing trained."
        )
