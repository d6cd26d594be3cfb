"""Ranking metrics from the target's 0-based rank among its candidates.

Ties count against the target: a candidate scoring exactly the target's score ranks above it,
so a model that scores everything equal gets rank ``n_candidates - 1``, not 0.
"""

from __future__ import annotations

import torch

from ur4rec.measures import DEFAULT_KS


def target_ranks(candidate_scores: torch.Tensor, target_scores: torch.Tensor) -> torch.Tensor:
    """Rank of each target among ``candidate_scores`` [B, C] (the target excluded from them)."""
    return (candidate_scores >= target_scores[:, None]).sum(dim=1)


def metrics_from_ranks(ranks: torch.Tensor, ks: tuple[int, ...] = DEFAULT_KS) -> dict[str, float]:
    """Mean Hit@K, NDCG@K (one relevant item) and MRR@K over users; keys like ``hit@10``."""
    if ranks.numel() == 0:
        raise ValueError("no ranks to average: the evaluation set is empty")
    ranks = ranks.to(torch.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hit@{k}"] = hit.double().mean().item()
        out[f"ndcg@{k}"] = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0).mean().item()
        out[f"mrr@{k}"] = torch.where(hit, 1.0 / (ranks + 1.0), 0.0).mean().item()
    return out
