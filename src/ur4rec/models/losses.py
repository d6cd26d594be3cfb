"""Training losses on already-computed logits, so each can be checked by hand."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F


def full_softmax_ce(
    logits: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy over all items: ``logits`` [N, n_items], ``targets`` [N]; ``known``
    [n_items] (bool) limits the classes to the items seen in training; ``bias`` [n_items], a
    constant added to every row (logit adjustment, ``popularity_bias``)."""
    if bias is not None:
        logits = logits + bias
    return F.cross_entropy(only_known(logits, known), targets)


def popularity_bias(counts: torch.Tensor, tau: float) -> torch.Tensor | None:
    """``tau`` x log(each item's share of the training interactions), [n_items]: the logit
    adjustment of a popularity-balanced softmax. Items without interactions get 0 (they are
    no class in training). None when ``tau`` is 0."""
    if tau <= 0:
        return None
    counts = counts.double()
    share = counts / counts.sum().clamp(min=1.0)
    log_share = torch.where(counts > 0, share.clamp(min=1e-300).log(), 0.0)
    return (tau * log_share).float()


def softmax_ce(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    targets: torch.Tensor,
    known: torch.Tensor | None = None,
    budget: int = 1 << 20,
    keep: int = 1 << 25,
    precision: str | None = None,
    bias: torch.Tensor | None = None,
) -> torch.Tensor:
    """``full_softmax_ce(hidden @ vectors.T, targets, known)`` without the [N, n_items]
    logits at once: rows are taken a block at a time (about ``budget`` logits each), so each
    block stays in cache. When all N x n_items probabilities fit in ``keep`` floats (128 MiB),
    the forward pass keeps them for the backward one; past that only the log-partition values
    are kept and the backward pass recomputes each block, so memory is bounded by the block,
    whatever the catalogue. ``hidden`` [N, H], ``vectors`` [n_items, H], ``targets`` [N],
    ``known`` [n_items] bool. ``precision="bfloat16"``: the three products (logits and both
    gradients) take bfloat16 inputs, accumulate in float32 and round their output to bfloat16,
    several times faster on CPUs with bfloat16 dot products (AVX512-BF16, AMX); the softmax,
    the loss and the gradients' sums stay float32. None: bfloat16 under a bfloat16 autocast
    (the backward pass runs outside it), else float32. ``bias`` [n_items]: a constant added to
    every row's logits (logit adjustment)."""
    if bias is not None:
        # A column of ones against the bias: the blocked kernel adds it with the product.
        hidden = torch.cat([hidden, hidden.new_ones(len(hidden), 1)], dim=1)
        vectors = torch.cat([vectors, bias.to(vectors)[:, None]], dim=1)
    if precision is None:
        device = hidden.device.type
        on = torch.is_autocast_enabled(device)
        precision = (
            "bfloat16" if on and torch.get_autocast_dtype(device) == torch.bfloat16 else "float32"
        )
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"precision must be float32 or bfloat16, not {precision!r}")
    unknown = None
    if known is not None and not bool(known.all()):
        unknown = (~known).nonzero()[:, 0]
    rows = max(1, budget // max(1, vectors.shape[0]))
    keep_probs = len(hidden) * vectors.shape[0] <= keep
    low = torch.bfloat16 if precision == "bfloat16" else None
    return _BlockedSoftmaxCE.apply(hidden, vectors, targets, unknown, rows, keep_probs, low)


class _BlockedSoftmaxCE(torch.autograd.Function):
    """Mean cross-entropy of ``hidden @ vectors.T`` (the ``unknown`` columns at -inf) a block
    of rows at a time. The backward pass takes each block's softmax from the forward pass
    (``keep_probs``) or recomputes it from the saved log-partition values."""

    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        hidden: torch.Tensor,
        vectors: torch.Tensor,
        targets: torch.Tensor,
        unknown: torch.Tensor | None,
        rows: int,
        keep_probs: bool,
        low: torch.dtype | None,
    ) -> torch.Tensor:
        h, v = _operands(hidden, vectors, low)
        lse = torch.empty(len(h), device=h.device)
        probs: list[torch.Tensor] = []  # one tensor a block: the allocator reuses their memory
        total = torch.zeros((), dtype=torch.float64, device=h.device)
        for start in range(0, len(h), rows):
            block = slice(start, start + rows)
            logits = _block_logits(h[block], v, unknown)
            picked = logits.gather(1, targets[block, None])[:, 0]
            if not keep_probs:
                lse[block] = torch.logsumexp(logits, dim=1)
            else:  # the fused softmax, kept for backward, gives the loss -log p[target] too
                p = torch.softmax(logits, dim=1)
                probs.append(p)
                lse[block] = picked - p.gather(1, targets[block, None])[:, 0].log()
                tiny = ~torch.isfinite(lse[block])  # p[target] underflowed: loss above ~87
                if bool(tiny.any()):
                    rows_at = tiny.nonzero()[:, 0]
                    lse[block][rows_at] = torch.logsumexp(logits[rows_at], dim=1)
            total += (lse[block] - picked).sum(dtype=torch.float64)
        ctx.unknown = unknown
        ctx.save_for_backward(hidden, vectors, targets, *(probs if keep_probs else [lse]))
        ctx.rows, ctx.keep_probs, ctx.low = rows, keep_probs, low
        return (total / max(1, len(h))).float()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        hidden, vectors, targets, *kept = ctx.saved_tensors
        unknown = ctx.unknown
        h, v = _operands(hidden, vectors, ctx.low)
        grad_h = torch.empty(h.shape, device=h.device)
        grad_v = torch.zeros(v.shape, device=v.device)
        scale = grad.float() / max(1, len(h))
        for start in range(0, len(h), ctx.rows):
            block = slice(start, start + ctx.rows)
            if ctx.keep_probs:
                p = kept[start // ctx.rows]  # the forward pass's softmax, updated in place
            else:
                p = _block_logits(h[block], v, unknown).sub_(kept[0][block, None]).exp_()
            # softmax - one-hot of the target, times the incoming gradient
            p[torch.arange(len(p), device=p.device), targets[block]] -= 1.0
            if ctx.low is not None:  # scaled and cast in one pass
                p = torch.mul(p, scale, out=torch.empty(p.shape, dtype=ctx.low, device=p.device))
                grad_h[block] = p @ v
                grad_v += p.T @ h[block]
            else:
                p.mul_(scale)
                grad_h[block] = p @ v
                grad_v.addmm_(p.T, h[block])
        return grad_h.to(hidden.dtype), grad_v.to(vectors.dtype), None, None, None, None, None


def _operands(
    hidden: torch.Tensor, vectors: torch.Tensor, low: torch.dtype | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The products' inputs: float32, or ``low`` (cast once, not once a block)."""
    dtype = low or torch.float32
    return hidden.detach().to(dtype), vectors.detach().to(dtype)


def _block_logits(h: torch.Tensor, v: torch.Tensor, unknown: torch.Tensor | None) -> torch.Tensor:
    """The logits of one block, float32; -inf for the unknown items."""
    logits = (h @ v.T).float()
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
