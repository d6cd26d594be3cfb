"""Fusion of the SASRec and retriever scores.

Each branch's scores are standardised per user (zero mean, unit spread over the items) before
they are combined: raw dot products and cosine/0.07 live on different scales, and added as
they are one branch drowns the other. The fused score is w * z_sasrec + (1 - w) *
z_retriever, with w from the method:

- ``fixed``: the configured weight (default 0.4 SASRec / 0.6 retriever);
- ``scalar``: one learned weight, starting at the configured one;
- ``gate``: a per-user weight from both branches' user states (user-specific fusion);
- ``curriculum``: moves linearly from ``curriculum_start`` to the configured weight over a stage;
- ``uncertainty``: learned log-variances weight the branch losses (Kendall et al., 2018), and
  w = softmax(-log-variances) weighs the scores.

With ``prior: ease`` a third, untrained branch (EASE over the user's last items) is added as
``prior_weight * z_prior``. With ``cooccurrence: rp3beta`` a fourth (RP3beta co-occurrence,
models/cooccurrence.py) is added as ``cooccurrence_weight * z_c``, and for rare items (1 to
``rare_below - 1`` training interactions) ``rare_weight * z_c + rare_bonus`` more: ID
branches trained with a softmax over the catalogue learn popularity into their scores, and
this is the one branch whose scores point at the rare items a user's history leads to.

A new item (never in training) is scored by the branches that can score it: the retriever
always (it reads text), SASRec only when it reads item text (``sasrec_text_features``), EASE
and co-occurrence never. A branch that cannot is standardised over the trained items alone,
so the new items' placeholder scores do not shift everyone's units; for a new item its weight
goes to the retriever (SASRec) or it adds nothing, its mean (EASE, co-occurrence). Otherwise
an untrained ID branch would push every new item below the trained ones.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ur4rec.config import FusionConfig

# The co-occurrence branch's weights: every item's, rare items' and rare items' bonus.
COOCCURRENCE_WEIGHTS = ("cooccurrence_weight", "rare_weight", "rare_bonus")


def standardise(
    scores: torch.Tensor, eps: float = 1e-6, over: torch.Tensor | None = None
) -> torch.Tensor:
    """Zero mean, unit spread per row; the statistics over the columns ``over`` ([n] bool)
    when given."""
    sample = scores if over is None else scores[..., over]
    mean = sample.mean(dim=-1, keepdim=True)
    std = sample.std(dim=-1, keepdim=True)
    return (scores - mean) / (std + eps)


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


class Fusion(nn.Module):
    def __init__(self, cfg: FusionConfig, sasrec_dim: int, retriever_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.method = cfg.method
        self.weight_logit = nn.Parameter(torch.tensor(_logit(cfg.sasrec_weight)))
        self.gate = nn.Sequential(
            nn.Linear(sasrec_dim + retriever_dim, 32), nn.GELU(), nn.Linear(32, 1)
        )
        nn.init.zeros_(self.gate[2].weight)
        nn.init.constant_(self.gate[2].bias, _logit(cfg.sasrec_weight))
        self.log_var = nn.Parameter(torch.zeros(2))  # sasrec, retriever (uncertainty)
        self.log_scale = nn.Parameter(torch.tensor(math.log(5.0)))  # fused logits' sharpness
        self.register_buffer("progress", torch.tensor(0.0))  # curriculum: 0 -> 1 over a stage
        self.register_buffer("fixed_weight", torch.tensor(float(cfg.sasrec_weight)))
        if cfg.prior != "none":  # only then: checkpoints without a prior still load
            self.register_buffer("prior_weight", torch.tensor(float(cfg.prior_weight)))
        if cfg.cooccurrence != "none":  # likewise
            for key in COOCCURRENCE_WEIGHTS:
                self.register_buffer(key, torch.tensor(float(getattr(cfg, key))))
        # [n_items] float, 1 for the rare items (set_rare_items); not saved: from the data.
        self.register_buffer("rare_items", None, persistent=False)
        # Items never seen in training (set_new_items); not saved: they follow from the data.
        self.register_buffer("new_items", None, persistent=False)
        self.sasrec_scores_new = True

    def set_new_items(self, new: torch.Tensor, sasrec_scores_them: bool) -> None:
        """``new`` [n_items] bool: items without training interactions; whether the SASRec
        branch can score them (it reads item text)."""
        self.register_buffer("new_items", new.bool() if bool(new.any()) else None, persistent=False)
        self.sasrec_scores_new = sasrec_scores_them

    def set_rare_items(self, rare: torch.Tensor) -> None:
        """``rare`` [n_items] bool: the items the co-occurrence branch's rare terms apply to."""
        self.register_buffer("rare_items", rare.float(), persistent=False)

    def cooccurrence_term(self, scores: torch.Tensor) -> torch.Tensor:
        """What the co-occurrence branch adds to the fused scores, from its raw ``scores``
        [B, n_items]: standardised over the trained items, 0 for new ones."""
        new = self.new_items
        z = standardise(scores, over=None if new is None else ~new)
        if new is not None:
            z = z.masked_fill(new, 0.0)
        term = self.cooccurrence_weight * z
        if self.rare_items is not None:
            term = term + self.rare_items * (self.rare_weight * z + self.rare_bonus)
        return term

    def set_cooccurrence_weights(self, weight: float, rare_weight: float, bonus: float) -> None:
        with torch.no_grad():
            self.cooccurrence_weight.fill_(weight)
            self.rare_weight.fill_(rare_weight)
            self.rare_bonus.fill_(bonus)

    def set_progress(self, progress: float) -> None:
        self.progress.fill_(min(max(progress, 0.0), 1.0))

    def sasrec_weight(self, seq_state: torch.Tensor, ret_state: torch.Tensor) -> torch.Tensor:
        """w for each row of the states ([..., 1])."""
        shape = (*seq_state.shape[:-1], 1)
        if self.method == "fixed":
            return self.fixed_weight.expand(shape)
        if self.method == "scalar":
            return torch.sigmoid(self.weight_logit).expand(shape)
        if self.method == "gate":
            return torch.sigmoid(self.gate(torch.cat([seq_state, ret_state], dim=-1)))
        if self.method == "curriculum":
            start, end = self.cfg.curriculum_start, self.cfg.sasrec_weight
            return (start + (end - start) * self.progress).expand(shape)
        return torch.softmax(-self.log_var, dim=0)[0].expand(shape)  # uncertainty

    def forward(
        self,
        seq_scores: torch.Tensor,
        ret_scores: torch.Tensor,
        seq_state: torch.Tensor,
        ret_state: torch.Tensor,
        prior: torch.Tensor | None = None,
        cooccurrence: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused scores, SASRec weight); fused scores are standardised units. ``prior``
        and ``cooccurrence`` (the untrained branches' scores) are added with their own
        weights."""
        w = self.sasrec_weight(seq_state, ret_state)
        new = self.new_items
        warm = None if new is None else ~new
        z_ret = standardise(ret_scores)
        if new is None or self.sasrec_scores_new:
            fused = w * standardise(seq_scores) + (1 - w) * z_ret
        else:
            fused = w * standardise(seq_scores, over=warm) + (1 - w) * z_ret
            fused = torch.where(new, z_ret, fused)
        if prior is not None:
            z_prior = standardise(prior, over=warm)
            if new is not None:
                z_prior = z_prior.masked_fill(new, 0.0)
            fused = fused + self.prior_weight * z_prior
        if cooccurrence is not None:
            fused = fused + self.cooccurrence_term(cooccurrence)
        return fused, w

    def set_weight(self, weight: float) -> None:
        """Set SASRec's weight for the fixed and scalar methods (e.g. after calibration)."""
        with torch.no_grad():
            self.fixed_weight.fill_(weight)
            self.weight_logit.fill_(_logit(weight))

    def set_prior_weight(self, weight: float) -> None:
        with torch.no_grad():
            self.prior_weight.fill_(weight)

    def branch_loss(self, seq_loss: torch.Tensor, ret_loss: torch.Tensor) -> torch.Tensor:
        if self.method == "uncertainty":
            return (
                torch.exp(-self.log_var[0]) * seq_loss + self.log_var[0]
                + torch.exp(-self.log_var[1]) * ret_loss + self.log_var[1]
            )  # fmt: skip
        return self.cfg.aux_weight * (seq_loss + ret_loss)
