"""Training losses on already-computed logits, so each can be checked by hand."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def full_softmax_ce(
    logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over all items: ``logits`` [N, n_items], ``targets`` [N]; ``known``
    [n_items] (bool) limits the classes to the items seen in training."""
    return F.cross_entropy(only_known(logits, known), targets)


def only_known(logits: torch.Tensor, known: torch.Tensor | None) -> torch.Tensor:
    """``logits`` with the columns of items not seen in training at -inf (no class at all)."""
    if known is None or bool(known.all()):
        return logits
    return logits.masked_fill(~known, float("-inf"))


def bce_with_negatives(
    pos_logits: torch.Tensor, neg_logits: torch.Tensor, neg_valid: torch.Tensor
) -> torch.Tensor:
    """SASRec's binary loss: -log s(pos) - sum_k log(1 - s(neg_k)), averaged over positions.

    ``pos_logits`` [N], ``neg_logits`` [N, K]; ``neg_valid`` [N, K] is False where a sampled
    negative happens to be the positive (it is left out, not counted as a negative).
    """
    pos_term = F.softplus(-pos_logits)
    neg_term = (F.softplus(neg_logits) * neg_valid).sum(dim=1)
    return (pos_term + neg_term).mean()


def sampled_softmax(
    pos_logits: torch.Tensor,
    neg_logits: torch.Tensor,
    neg_valid: torch.Tensor,
    pos_log_q: torch.Tensor | None = None,
    neg_log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the positive and K sampled negatives, with optional logQ correction.

    ``pos_logits`` [N], ``neg_logits`` [N, K], ``neg_valid`` [N, K]; ``*_log_q`` are the log
    expected sample counts, subtracted so popularity sampling does not bias the estimate.
    """
    if pos_log_q is not None:
        pos_logits = pos_logits - pos_log_q
    if neg_log_q is not None:
        neg_logits = neg_logits - neg_log_q
    neg_logits = neg_logits.masked_fill(~neg_valid, float("-inf"))
    logits = torch.cat([pos_logits[:, None], neg_logits], dim=1)
    return -torch.log_softmax(logits, dim=1)[:, 0].mean()
