"""RP3beta (Paudel et al., 2016): item-item co-occurrence that does not favour popular items.

A random walk item -> user -> item over the training part gives P[i, j], the chance of
reaching j from i in two steps (each step uniform over the edges). RP3beta raises it to the
power alpha and divides by popularity(j)^beta, so a rare item a user's items lead to is not
outranked by a popular one that everything leads to. Each row keeps its ``top`` largest
entries. A user's scores are the sum of the rows of the items in their history.

It needs no training and reaches rare items that ID embeddings learn poorly: on ml-100k-liked
it alone ranks targets with 1-19 training interactions better than text-kNN does, and inside
UR4Rec it is a scoring-time branch (fusion.cooccurrence) weighted on validation.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, Prefixes, prefix_mask
from ur4rec.errors import Ur4recError

# Entries per block of rows while fitting (float64): a block is [rows, n_items] dense, with
# as many rows as fit in this, so memory stays near 256 MiB whatever the catalogue's size.
BLOCK_ENTRIES = 2**25


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
