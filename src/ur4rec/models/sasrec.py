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

from ur4rec.config import LossConfig, ModelConfig, RunConfig
from ur4rec.data.batches import HistoryBatch, TrainBatch
from ur4rec.data.splits import PAD, interaction_counts
from ur4rec.models import losses
from ur4rec.models.base import ModelInputs, RecModel, register
from ur4rec.models.cache import ItemVectorCache


class SelfAttention(nn.Module):
    def __init__(self, hidden: int, heads: int, attn_dropout: float, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden size {hidden} is not divisible by {heads} heads")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = attn_dropout
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, allowed: torch.Tensor) -> torch.Tensor:
        batch, length, hidden = x.shape
        q, k, v = self.qkv(x).split(hidden, dim=2)
        q, k, v = (t.view(batch, length, self.heads, -1).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=allowed, dropout_p=self.attn_dropout if self.training else 0.0
        )
        y = y.transpose(1, 2).reshape(batch, length, hidden)
        return self.dropout(self.out(y))


class FeedForward(nn.Module):
    def __init__(self, hidden: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden), nn.Dropout(dropout)
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


def describe_sasrec(cfg: RunConfig) -> str:
    m = cfg.model
    return (
        f"SASRec, a causal transformer over the user's last {cfg.data.max_len} items "
        f"({m.layers} layers, {m.heads} heads, hidden size {m.hidden}), scoring every item by a "
        "dot product with its embedding"
    )


@register
class SASRec(ItemVectorCache, RecModel):
    """Item ID embeddings (+ optional item side features) -> causal transformer -> dot
    product with the same item vectors."""

    name = "sasrec"
    objectives = ("sasrec",)
    modules = ("sasrec",)
    branches = ("sasrec",)

    def __init__(
        self,
        n_items: int,
        max_len: int,
        cfg: ModelConfig,
        item_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.max_len = max_len
        self.cfg = cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=n_items)
        self.pos_emb = nn.Embedding(max_len, cfg.hidden)
        self.feature_proj: nn.Linear | None = None
        if item_features is not None:
            # Side features (e.g. text embeddings) are fixed inputs, not parameters.
            self.register_buffer("item_features", item_features.float(), persistent=False)
            self.feature_proj = nn.Linear(item_features.shape[1], cfg.hidden, bias=False)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.layers))
        self.final_norm = nn.LayerNorm(cfg.hidden) if cfg.norm == "pre" else nn.Identity()
        self.apply(self._init_weights)
        # The training loss, when it trains on its own (build); a component of another
        # model is trained by that model's loss.
        self.loss_cfg = LossConfig()
        self.sampler: NegativeSampler | None = None

    @classmethod
    def build(cls, inputs: ModelInputs) -> SASRec:
        cfg = inputs.cfg
        model = cls(inputs.dataset.n_items, cfg.data.max_len, cfg.model)
        popularity = None
        if cfg.loss.sampler == "popularity":
            popularity = torch.from_numpy(interaction_counts(inputs.dataset, inputs.train))
        model.loss_cfg = cfg.loss
        model.sampler = NegativeSampler(inputs.dataset.n_items, popularity)
        return model

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()

    def item_vectors(self) -> torch.Tensor:
        """[n_items, hidden]: what histories are made of and what users are matched against."""
        if self._item_cache is not None:
            return self._item_cache
        vectors = self.item_emb.weight[: self.n_items]
        if self.feature_proj is not None:
            vectors = vectors + self.feature_proj(self.item_features)
        return vectors

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
        # A position may see earlier real positions; padding sees only itself (never NaN).
        allowed = (causal & valid[:, None, :]) | torch.eye(length, dtype=torch.bool)
        allowed = allowed[:, None]  # broadcast over heads
        for block in self.blocks:
            x = block(x, allowed) * valid[..., None]
        return self.final_norm(x) * valid[..., None]

    def user_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[B, H] hidden state at each history's last real item, however it is padded."""
        return self.encode(self.left_align(items))[:, -1]

    def left_align(self, items: torch.Tensor) -> torch.Tensor:
        """Left-align any padding, then keep each history's last ``max_len`` items."""
        # A stable sort on "is real" moves padding to the front and keeps the items' order.
        order = torch.argsort((items != PAD).to(torch.int8), dim=1, stable=True)
        return items.gather(1, order)[:, -self.max_len :]

    # -- the model interface ------------------------------------------------------------
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.user_vectors(batch.items) @ self.item_vectors().T

    def user_states(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {"sasrec_state": self.user_vectors(batch.items)}

    def scores_from_states(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = states["sasrec_state"] @ self.item_vectors().T
        return {"score": scores, "sasrec": scores}

    def item_space(self) -> torch.Tensor:
        return self.item_vectors()

    def describe_config(self, cfg: RunConfig) -> str:
        return f"{describe_sasrec(cfg)}. It reads item ids only, no text."

    def prepare_for_inference(self) -> None:
        self.cache_item_vectors()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"sasrec": list(self.parameters())}

    def training_loss(self, batch: TrainBatch, generator: torch.Generator) -> torch.Tensor:
        if self.sampler is None:
            self.sampler = NegativeSampler(self.n_items)
        return self.next_item_loss(
            batch.inputs, batch.targets, self.loss_cfg, self.sampler, generator
        )

    def next_item_loss(
        self,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        loss: LossConfig,
        sampler: NegativeSampler,
        generator: torch.Generator,
    ) -> torch.Tensor:
        """Next-item loss at every real position of the windows ``inputs`` [B, L]; ``targets``
        [B, L] holds the item after each position (PAD where none)."""
        states = self.encode(inputs)
        keep = targets != PAD
        hidden, target = states[keep], targets[keep]
        vectors = self.item_vectors()
        if loss.kind == "ce":
            return losses.full_softmax_ce(hidden @ vectors.T, target)
        pos_logits = (hidden * vectors[target]).sum(dim=1)
        if loss.kind == "bce":
            negatives = sampler.sample((len(target), loss.negatives), generator)
            neg_logits = (hidden[:, None, :] * vectors[negatives]).sum(dim=2)
            return losses.bce_with_negatives(pos_logits, neg_logits, negatives != target[:, None])
        negatives = sampler.sample((loss.negatives,), generator)
        neg_logits = hidden @ vectors[negatives].T
        valid = negatives[None, :] != target[:, None]
        log_q = sampler.log_expected_count(loss.negatives)
        return losses.sampled_softmax(
            pos_logits, neg_logits, valid, log_q[target], log_q[negatives][None, :]
        )


class NegativeSampler:
    """Draws negative items uniformly or in proportion to training popularity."""

    def __init__(self, n_items: int, popularity: torch.Tensor | None = None) -> None:
        self.n_items = n_items
        if popularity is None:
            self.probs = torch.full((n_items,), 1.0 / n_items)
        else:
            weights = popularity.double() + 1e-9  # never-seen items stay drawable, rarely
            self.probs = (weights / weights.sum()).float()
        self.uniform = popularity is None

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        count = math.prod(shape)
        if self.uniform:
            return torch.randint(self.n_items, shape, generator=generator)
        return torch.multinomial(self.probs, count, replacement=True, generator=generator).view(
            shape
        )

    def log_expected_count(self, k: int) -> torch.Tensor:
        return torch.log(self.probs * k)
