"""Training losses on already-computed logits, so each can be checked by hand."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def full_softmax_ce(
    logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy over all items: ``logits`` [N, n_items], ``targets`` [N]; ``known``
    [n_items] (bool) limits the classes to the items seen in training."""
    return F.cross_entropy(only_known(logits, known), targets)


def softmax_ce(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor | None = None,
    budget: int = 1 << 20,
) -> torch.Tensor:
    """``full_softmax_ce(hidden @ vectors.T, targets, known)`` without the [N, n_items]
    logits: rows are taken a block at a time (about ``budget`` logits each), in the forward
    pass and again in the backward one, so memory is bounded by the block, whatever the
    catalogue. It is also faster than the materialised loss, since each block stays in cache.
    ``hidden`` [N, H], ``vectors`` [n_items, H], ``targets`` [N], ``known`` [n_items] bool."""
    unknown = None
    if known is not None and not bool(known.all()):
        unknown = (~known).nonzero()[:, 0]
    rows = max(1, budget // max(1, vectors.shape[0]))
    return _BlockedSoftmaxCE.apply(hidden, vectors, targets, unknown, rows)


class _BlockedSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ vectors.T`` (the ``unknown`` columns at -inf) a block
    of rows at a time; the backward pass recomputes each block's logits from the saved
    log-partition values."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        vectors: torch.Tensor,
        targets: torch.Tensor,
        unknown: torch.Tensor | None,
        rows: int,
    ) -> torch.Tensor:
        h, v = hidden.float(), vectors.float()
        lse = torch.empty(len(h))
        total = torch.zeros((), dtype=torch.float64)
        for start in range(0, len(h), rows):
            block = slice(start, start + rows)
            logits = _block_logits(h[block], v, unknown)
            lse[block] = torch.logsumexp(logits, dim=1)
            picked = logits.gather(1, targets[block, None])[:, 0]
            total += (lse[block] - picked).sum(dtype=torch.float64)
        saved = [hidden, vectors, targets, lse, *([] if unknown is None else [unknown])]
        ctx.save_for_backward(*saved)
        ctx.rows = rows
        return (total / max(1, len(h))).float()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, vectors, targets, lse, *rest = ctx.saved_tensors
        unknown = rest[0] if rest else None
        h, v = hidden.float(), vectors.float()
        grad_h = torch.empty_like(h)
        grad_v = torch.zeros_like(v)
        scale = grad.float() / max(1, len(h))
        for start in range(0, len(h), ctx.rows):
            block = slice(start, start + ctx.rows)
            # softmax - one-hot of the target, times the incoming gradient
            p = _block_logits(h[block], v, unknown).sub_(lse[block, None]).exp_()
            p[torch.arange(len(p)), targets[block]] -= 1.0
            p.mul_(scale)
            grad_h[block] = p @ v
            grad_v.addmm_(p.T, h[block])
        return grad_h.to(hidden.dtype), grad_v.to(vectors.dtype), None, None, None


def _block_logits(h: torch.Tensor, v: torch.Tensor, unknown: torch.Tensor | None) -> torch.Tensor:
    """The logits of one block; -inf for the unknown items."""
    logits = h @ v.T
    return logits if unknown is None else logits.index_fill_(1, unknown, float("-inf"))


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
