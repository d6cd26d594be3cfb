"""The text user-preference retriever: a user tower matched against an item tower by cosine.

Item tower: the item's description embedding through a trainable projection, plus an optional
item ID embedding (zero for items never seen in training, which the text alone places).

User tower, at every position of a history: the user's preference-text embedding, plus the
items so far (description + ID vectors) attention-pooled with causal masking, plus an
optional memory read. The state then attends to P
learned proxy tokens and is routed over E expert heads (dense softmax or top-k) with a
load-balancing loss.

Scores are cosine similarities over a temperature, for all items as one matrix product.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ur4rec.config import RetrieverConfig
from ur4rec.data.splits import PAD
from ur4rec.models.base import grown_embedding
from ur4rec.models.cache import ItemVectorCache
from ur4rec.models.sequential import step_id_keep


class MixtureOfExperts(nn.Module):
    """E two-layer experts mixed by a router; all experts run as one batched product."""

    def __init__(self, dim: int, out: int, experts: int, router: str, top_k: int) -> None:
        super().__init__()
        self.experts, self.router_kind, self.top_k = experts, router, min(top_k, experts)
        self.router = nn.Linear(dim, experts)
        self.w1 = nn.Parameter(torch.randn(experts, dim, dim) / math.sqrt(dim))
        self.b1 = nn.Parameter(torch.zeros(experts, dim))
        self.w2 = nn.Parameter(torch.randn(experts, dim, out) / math.sqrt(dim))
        self.b2 = nn.Parameter(torch.zeros(experts, out))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """x [N, dim] -> (output [N, out], weights [N, E], load-balancing loss)."""
        probs = self.router(x).softmax(dim=-1)
        weights = probs
        if self.router_kind == "topk" and self.top_k < self.experts:
            top = probs.topk(self.top_k, dim=-1)
            weights = torch.zeros_like(probs).scatter(-1, top.indices, top.values)
            weights = weights / weights.sum(dim=-1, keepdim=True)
        hidden = F.gelu(torch.einsum("nd,edh->neh", x, self.w1) + self.b1)
        outputs = torch.einsum("neh,eho->neo", hidden, self.w2) + self.b2
        mixed = (weights[..., None] * outputs).sum(dim=1)
        # Switch-style balance: E * sum_e (share routed to e) * (mean router prob of e); 1 when
        # uniform. For the dense router the share is the mean weight itself.
        if self.router_kind == "topk":
            share = (weights > 0).float().mean(0) / max(self.top_k, 1)
        else:
            share = weights.mean(0)
        balance = self.experts * (share * probs.mean(0)).sum()
        return mixed, weights, balance


class Retriever(ItemVectorCache):
    _history_cache: torch.Tensor | None = None

    def __init__(
        self,
        n_items: int,
        item_text: torch.Tensor,
        user_text: torch.Tensor,
        max_len: int,
        cfg: RetrieverConfig,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = n_items
        text_dim = item_text.shape[1]
        d = cfg.dim
        # Text embeddings are fixed inputs (recomputed from the cache), not checkpointed.
        self.register_buffer("item_text", item_text.float(), persistent=False)
        self.register_buffer("user_text", user_text.float(), persistent=False)
        self.item_proj = nn.Linear(text_dim, d)
        self.item_id = nn.Embedding(n_items + 1, d, padding_idx=n_items) if cfg.item_ids else None
        self.history_proj = nn.Linear(text_dim, d)
        self.user_proj = nn.Linear(text_dim, d)
        self.pos_emb = nn.Embedding(max_len, d)
        self.pool_query = nn.Linear(d, d)
        self.pool_key = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.proxies = nn.Parameter(torch.randn(max(cfg.proxies, 1), d) * 0.02)
        self.moe = MixtureOfExperts(d, d, max(cfg.experts, 1), cfg.router, cfg.top_k)
        self.dropout = nn.Dropout(cfg.dropout)
        self.max_len = max_len
        self.register_buffer("known", None, persistent=False)  # trained items; None: all
        if self.item_id is not None:
            nn.init.normal_(self.item_id.weight, std=0.02)
            self.item_id.weight.data[n_items].zero_()

    def set_known_items(self, known: torch.Tensor) -> None:
        """The items seen in training ([n_items] bool); the others get no ID vector."""
        self.register_buffer("known", known.bool(), persistent=False)
        self.clear_item_cache()

    def add_items(self, item_text: torch.Tensor) -> None:
        """Items that arrived after training: their text, no ID vector."""
        added, cached = len(item_text), self._item_cache
        self.register_buffer(
            "item_text", torch.cat([self.item_text, item_text.float()]), persistent=False
        )
        if self.item_id is not None:
            self.item_id = grown_embedding(self.item_id, added)
        known = self.known if self.known is not None else torch.ones(self.n_items, dtype=bool)
        self.n_items += added
        self.set_known_items(torch.cat([known, known.new_zeros(added)]))
        if cached is not None and self._history_cache is not None:
            # Serving: only the new rows (text alone, no ID vector), not the whole catalogue.
            with torch.no_grad():
                text = item_text.float()
                self._item_cache = torch.cat([cached, F.normalize(self.item_proj(text), dim=-1)])
                self._history_cache = torch.cat([self._history_cache, self.history_proj(text)])

    def _item_ids(self) -> torch.Tensor:
        ids = self.item_id.weight  # n_items + 1 rows, the last (padding) zero
        if self.known is not None:
            ids = ids * torch.cat([self.known, self.known.new_zeros(1)])[:, None]
        if self.training and self.cfg.id_dropout > 0:
            keep = step_id_keep(self, self.cfg.id_dropout, ids.device)
            ids = ids * torch.cat([keep, keep.new_zeros(1)])[:, None]
        return ids

    def item_vectors(self) -> torch.Tensor:
        """[n_items, dim], L2-normalised."""
        if self._item_cache is not None:
            return self._item_cache
        vectors = self.item_proj(self.item_text)
        if self.item_id is not None:
            vectors = vectors + self._item_ids()[: self.n_items]
        return F.normalize(vectors, dim=-1)

    def cache_item_vectors(self) -> torch.Tensor:
        # Serving also keeps every item's history-token projection: a gather, not a product.
        with torch.no_grad():
            self._history_cache = self.history_proj(self.item_text)
        return super().cache_item_vectors()

    def history_tokens(self, items: torch.Tensor) -> torch.Tensor:
        valid = items != PAD
        safe = items.clamp(min=0)
        if self._item_cache is not None and self._history_cache is not None:
            tokens = self._history_cache[safe]
        else:
            tokens = self.history_proj(self.item_text[safe])
        if self.item_id is not None:
            tokens = tokens + self._item_ids()[torch.where(valid, items, self.n_items)]
        positions = (valid.cumsum(dim=1) - 1).clamp(min=0)
        return (tokens + self.pos_emb(positions)) * valid[..., None]

    def user_states(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        memory: torch.Tensor | None = None,
        user_text: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """User vectors at every position of left-padded ``items`` [B, L].

        Returns (vectors [B, L, dim] L2-normalised, router weights [B, L, E], balance loss).
        ``memory`` [B, dim] and ``user_text`` [B, text_dim] (or [B, L, text_dim], a text per
        position) are optional per-user inputs.
        ``last_only`` computes the last position alone ([B, 1, ...]): scoring needs no more,
        and the experts then run on one row per user instead of L.
        """
        batch, length = items.shape
        valid = items != PAD
        d = self.cfg.dim
        rows = slice(length - 1, length) if last_only else slice(None)
        state = torch.zeros(batch, 1 if last_only else length, d, device=items.device)
        if self.cfg.preference_text:
            text = user_text if user_text is not None else self.user_text[users]
            projected = self.user_proj(text)
            # One text per user [B, text_dim], or one per position [B, L, text_dim] (training).
            state = state + (projected[:, None, :] if text.dim() == 2 else projected[:, rows])
        tokens = self.history_tokens(items)
        if self.cfg.sequence:
            # Causal attention pooling: position t summarises the items up to t.
            queries = tokens[:, rows]
            scores = self.pool_query(queries + state) @ self.pool_key(tokens).transpose(1, 2)
            causal = torch.ones(length, length, dtype=torch.bool, device=items.device).tril()
            eye = torch.eye(length, dtype=torch.bool, device=items.device)
            allowed = (causal[rows] & valid[:, None, :]) | eye[rows]
            scores = scores.masked_fill(~allowed, float("-inf")) / math.sqrt(d)
            state = state + scores.softmax(dim=-1) @ tokens + queries
        if memory is not None:
            state = state + memory[:, None, :]
        state = self.dropout(self.norm(state))
        positions = state.shape[1]
        flat = state.reshape(batch * positions, d)
        if self.cfg.proxies > 0:
            attn = (flat @ self.proxies.T / math.sqrt(d)).softmax(dim=-1)
            flat = flat + attn @ self.proxies
        mixed, weights, balance = self.moe(flat)
        vectors = F.normalize(mixed, dim=-1).view(batch, positions, -1)
        return vectors, weights.view(batch, positions, -1), balance

    def logits(self, user_vectors: torch.Tensor) -> torch.Tensor:
        """Cosine similarity over the temperature against every item: [..., n_items]."""
        return user_vectors @ self.item_vectors().T / self.cfg.temperature


class CoAttentionReranker(nn.Module):
    """Re-scores a user's top candidates: each candidate attends over the user's history
    tokens and is matched against that item-specific summary."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.out = nn.Linear(3 * dim, 1)

    def forward(
        self,
        user: torch.Tensor,
        candidates: torch.Tensor,
        history: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        """user [B, d], candidates [B, K, d], history [B, L, d], valid [B, L] -> scores [B, K]."""
        scores = (
            self.query(candidates) @ self.key(history).transpose(1, 2) / math.sqrt(user.shape[-1])
        )
        # A finite fill keeps an empty history finite (no NaN to patch); it is zeroed below.
        scores = scores.masked_fill(~valid[:, None, :], -1e9)
        summary = (scores.softmax(dim=-1) @ history) * valid.any(dim=1)[:, None, None]
        features = torch.cat([candidates * user[:, None, :], candidates * summary, summary], dim=-1)
        return self.out(features).squeeze(-1)
