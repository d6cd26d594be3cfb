"""SASRec (Kang & McAuley, 2018): causal self-attention over a user's recent items.

Histories arrive left-padded with PAD (-1), the most recent item last. Padding never leaks:
positions are counted from each history's first real item, real positions attend only to real
positions, and padded positions are zeroed after every block. So the same items give the same
user vector whatever the padding (left or right, short or long), and no score is NaN.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ur4rec.config import ModelConfig, RunConfig
from ur4rec.data.splits import PAD
from ur4rec.models.base import register
from ur4rec.models.dropout import Dropout, apply_dropout
from ur4rec.models.sequential import NegativeSampler, SequentialModel

__all__ = ["NegativeSampler", "SASRec"]


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout
        self.dropout = Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        if self.training and self.attn_dropout > 0:
            # Written out so the attention weights take the cheaper dropout mask.
            weights = (q @ k.transpose(-1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
            weights = weights.masked_fill(~allowed, float("-inf")).softmax(dim=-1)
            y = apply_dropout(weights, self.attn_dropout, True) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        y = y.transpose(1, 2).reshape(batch, length, hidden)
        return self.dropout(self.out(y))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), Dropout(dropout)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.pre_norm = cfg.norm == "pre"
        self.norm1 = nn.LayerNorm(cfg.hidden)
        self.attn = SelfAttention(cfg.hidden, cfg.heads, cfg.attn_dropout, cfg.dropout)
        self.norm2 = nn.LayerNorm(cfg.hidden)
        self.ff = FeedForward(cfg.hidden, cfg.inner, cfg.dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        if self.pre_norm:
            x = x + self.attn(self.norm1(x), allowed)
            return x + self.ff(self.norm2(x))
        x = self.norm1(x + self.attn(x, allowed))
        return self.norm2(x + self.ff(x))


@register
class SASRec(SequentialModel):
    """Item ID embeddings (+ optional item side features) -> causal transformer -> dot
    product with the same item vectors."""

    name = "sasrec"

    def __init__(
        self,
        n_items: int,
        max_len: int,
        cfg: ModelConfig,
        item_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        # Layers are made in this order (the initialisation draws depend on it).
        self._item_embedding(n_items, max_len, cfg)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self._item_features(item_features)
        self.emb_dropout = Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.hidden) if cfg.norm == "pre" else nn.Identity()
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, H] for padded histories [B, L] (PAD = -1); zero at padding."""
        valid = items != PAD
        vectors = self.item_vectors()
        x = vectors[items.clamp(min=0)] * valid[..., None]
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
        x = self.emb_dropout(x * math.sqrt(self.cfg.hidden) + self.pos_emb(positions))
        x = x * valid[..., None]
        length = items.shape[1]
        causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
        eye = torch.eye(length, dtype=torch.bool, device=items.device)
        # A position may see earlier real positions; padding sees only itself (never NaN).
        allowed = (causal & valid[:, None, :]) | eye
        allowed = allowed[:, None]  # broadcast over heads
        for block in self.blocks:
            x = block(x, allowed) * valid[..., None]
        return self.final_norm(x) * valid[..., None]

    def summary(self, cfg: RunConfig) -> str:
        m = cfg.model
        return (
            f"SASRec, a causal transformer over the user's last {cfg.data.max_len} items "
            f"({m.layers} layers, {m.heads} heads, hidden size {m.hidden}), scoring every item "
            "by a dot product with its embedding"
        )
