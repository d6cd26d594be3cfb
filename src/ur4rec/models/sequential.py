"""What the ID-based sequential models share: item vectors, padding, the model interface and
the next-item loss. A subclass (SASRec, GRU4Rec) creates its layers and writes ``encode``.

Histories arrive left-padded with PAD (-1), the most recent item last. ``encode`` returns a
hidden state per position, zero at padding; the user's vector is the state at the last real
item, scored against every item's vector by a dot product.

An item that never occurs in training (a new item) has a zero ID vector: in a history it is an
unknown token, and an ID-only model scores it 0 for every user, which ranks it among the
items the user is neither drawn to nor away from. With item features (content embeddings) it
keeps its content vector, so it is ranked like the items whose content it shares. The training
softmax never has it as a class (models/base.py ``trained_items``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ur4rec.config import LossConfig, ModelConfig, RunConfig
from ur4rec.data.batches import HistoryBatch, TrainBatch, last_items
from ur4rec.data.splits import PAD, interaction_counts
from ur4rec.models import losses
from ur4rec.models.base import ModelInputs, RecModel, grown_embedding
from ur4rec.models.cache import ItemVectorCache


class SequentialModel(ItemVectorCache, RecModel):
    """Item ID embeddings (+ optional fixed item features through a projection) -> a sequence
    encoder -> dot product with the same item vectors. Subclasses set ``name`` (which is also
    their module, branch and state name), define ``item_emb`` (n_items + 1 rows, the last for
    padding), ``feature_proj`` / ``item_features`` and ``max_len``, and implement
    ``encode``."""

    item_emb: nn.Embedding
    feature_proj: nn.Linear | None
    item_features: torch.Tensor
    max_len: int

    def __init__(self) -> None:
        super().__init__()
        # The training loss, when it trains on its own (build); a component of another
        # model is trained by that model's loss.
        self.loss_cfg = LossConfig()
        self.sampler: NegativeSampler | None = None
        self.register_buffer("known", None, persistent=False)  # trained items; None: all
        # Added to the training logits only (loss.logit_adjust); None: off.
        self.register_buffer("train_bias", None, persistent=False)

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        cls.objectives = cls.module_names = cls.branches = (cls.name,)

    def _item_embedding(self, n_items: int, max_len: int, cfg: ModelConfig) -> None:
        self.n_items = n_items
        self.max_len = max_len
        self.cfg = cfg
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden, padding_idx=n_items)

    def set_known_items(self, known: torch.Tensor) -> None:
        """The items seen in training ([n_items] bool); the others get no ID vector."""
        self.register_buffer("known", known.bool(), persistent=False)
        self.clear_item_cache()

    def add_items(self, item_text: torch.Tensor | None) -> None:
        """New items from their text embeddings (None: no features, as in an ID-only
        component of UR4Rec, whose new items then score 0)."""
        if (item_text is None) != (self.feature_proj is None):
            super().add_items(item_text)  # a model without features cannot place them
        added = len(item_text) if item_text is not None else 0
        cached = self._item_cache
        if item_text is not None:
            self.register_buffer(
                "item_features", torch.cat([self.item_features, item_text.float()]),
                persistent=False,
            )  # fmt: skip
        self.item_emb = grown_embedding(self.item_emb, added)
        known = self.known if self.known is not None else torch.ones(self.n_items, dtype=bool)
        self.n_items += added
        self.set_known_items(torch.cat([known, known.new_zeros(added)]))
        if self.train_bias is not None:
            self.train_bias = torch.cat([self.train_bias, self.train_bias.new_zeros(added)])
        if self.sampler is not None:
            self.sampler = NegativeSampler(self.n_items, known=self.known)
        if cached is not None:  # serving: only the new rows (content alone, no ID part)
            with torch.no_grad():
                rows = (
                    self.feature_proj(item_text.float())
                    if self.feature_proj is not None and item_text is not None
                    else cached.new_zeros(added, cached.shape[1])
                )
            self._item_cache = torch.cat([cached, rows])

    def _item_features(self, item_features: torch.Tensor | None) -> None:
        self.feature_proj = None
        if item_features is not None:
            # Side features (e.g. text embeddings) are fixed inputs, not parameters.
            self.register_buffer("item_features", item_features.float(), persistent=False)
            self.feature_proj = nn.Linear(item_features.shape[1], self.cfg.hidden, bias=False)

    @classmethod
    def create(
        cls, n_items: int, max_len: int, cfg: ModelConfig, item_features: torch.Tensor | None
    ) -> SequentialModel:
        return cls(n_items, max_len, cfg, item_features=item_features)  # type: ignore[call-arg]

    @classmethod
    def item_features_of(cls, inputs: ModelInputs) -> torch.Tensor | None:
        """The fixed item features the model reads (None: item ids only)."""
        return None

    @classmethod
    def build(cls, inputs: ModelInputs) -> SequentialModel:
        cfg = inputs.cfg
        features = cls.item_features_of(inputs)
        model = cls.create(inputs.dataset.n_items, cfg.data.max_len, cfg.model, features)
        counts = torch.from_numpy(interaction_counts(inputs.dataset, inputs.train))
        popularity = counts if cfg.loss.sampler == "popularity" else None
        model.loss_cfg = cfg.loss
        model.train_bias = losses.popularity_bias(counts, cfg.loss.logit_adjust)
        known = counts > 0
        model.set_known_items(known)
        model.sampler = NegativeSampler(inputs.dataset.n_items, popularity, known, counts)
        return model

    def item_vectors(self) -> torch.Tensor:
        """[n_items, hidden]: what histories are made of and what users are matched against."""
        if self._item_cache is not None:
            return self._item_cache
        ids = self.item_emb.weight[: self.n_items]
        if self.known is not None:
            ids = ids * self.known[:, None]
        if self.feature_proj is None:
            return ids
        content = self.feature_proj(self.item_features)
        if self.training and self.cfg.id_dropout > 0:
            ids = ids * step_id_keep(self, self.cfg.id_dropout, ids.device)[:, None]
        bound = self.cfg.id_residual
        if bound > 0:
            # The ID part may move an item at most `bound` times its content vector's length
            # away from it, so content keeps its structure and a new item (ID part 0) stays
            # comparable with trained ones (Pembek et al., RecSys 2025).
            limit = bound * content.detach().norm(dim=1, keepdim=True)
            norm = ids.norm(dim=1, keepdim=True)
            ids = ids * torch.clamp(limit / (norm + 1e-12), max=1.0)
        return content + ids

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, H] for left-padded histories [B, L]; zero at padding."""
        raise NotImplementedError

    def user_vectors(self, items: torch.Tensor) -> torch.Tensor:
        """[B, H] hidden state at each history's last real item, however it is padded."""
        return self.encode(self.left_align(items))[:, -1]

    def left_align(self, items: torch.Tensor) -> torch.Tensor:
        """Left-align any padding, then keep each history's last ``max_len`` items."""
        return last_items(items, min(self.max_len, items.shape[1]))

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.user_vectors(batch.items) @ self.item_vectors().T

    def user_states(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        return {f"{self.name}_state": self.user_vectors(batch.items)}

    def scores_from_states(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        scores = states[f"{self.name}_state"] @ self.item_vectors().T
        return {"score": scores, self.name: scores}

    def block_scores(self, states: dict[str, torch.Tensor], items: slice) -> torch.Tensor:
        return states[f"{self.name}_state"] @ self.item_vectors()[items].T

    def dot_branches(self) -> dict[str, torch.Tensor] | None:
        return {self.name: self.item_vectors()}

    def branch_queries(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {self.name: states[f"{self.name}_state"]}

    def candidate_scores(
        self, states: dict[str, torch.Tensor], items: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        user = states[f"{self.name}_state"]
        scores = torch.einsum("bcd,bd->bc", self.item_vectors()[items], user)
        return {"score": scores, self.name: scores}

    def item_space(self) -> torch.Tensor:
        return self.item_vectors()

    def summary(self, cfg: RunConfig) -> str:
        """What this encoder is, as configured (for reports)."""
        return self.name

    def describe_config(self, cfg: RunConfig) -> str:
        return f"{self.summary(cfg)}. It reads item ids only, no text."

    def prepare_for_inference(self) -> None:
        self.cache_item_vectors()

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {self.name: list(self.parameters())}

    def training_loss(self, batch: TrainBatch, generator: torch.Generator) -> torch.Tensor:
        new_training_step(self)
        if self.sampler is None:
            self.sampler = NegativeSampler(self.n_items, known=self.known)
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
            return losses.softmax_ce(hidden, vectors, target, self.known, bias=self.train_bias)
        pos_logits = (hidden * vectors[target]).sum(dim=1)
        if loss.kind == "bce":
            negatives = sampler.sample((len(target), loss.negatives), generator).to(target.device)
            neg_logits = (hidden[:, None, :] * vectors[negatives]).sum(dim=2)
            return losses.bce_with_negatives(pos_logits, neg_logits, negatives != target[:, None])
        negatives = sampler.sample((loss.negatives,), generator).to(target.device)
        if loss.in_batch:
            return mixed_sampled_softmax(hidden, vectors, target, negatives, sampler, generator)
        neg_logits = hidden @ vectors[negatives].T
        valid = negatives[None, :] != target[:, None]
        log_q = sampler.log_expected_count(loss.negatives).to(target.device)
        return losses.sampled_softmax(
            pos_logits, neg_logits, valid, log_q[target], log_q[negatives][None, :]
        )


def mixed_sampled_softmax(
    hidden: torch.Tensor,
    vectors: torch.Tensor,
    target: torch.Tensor,
    negatives: torch.Tensor,
    sampler: NegativeSampler,
    generator: torch.Generator,
) -> torch.Tensor:
    """Mixed negative sampling (Yang et al., 2020): each position's softmax is over its target,
    the K ``negatives`` drawn by ``sampler`` and K more drawn from the batch's own targets
    (so popular items come often, as they do as targets), shared by all positions. The cost
    is [positions x 2K], whatever the catalogue. Every logit is corrected by the log of the
    item's expected count among the 2K: ``K x share_i + K x q_i``; a negative that is the
    position's own target is left out."""
    k = len(negatives)
    in_batch = target[torch.randint(len(target), (k,), generator=generator).to(target.device)]
    pool = torch.cat([in_batch, negatives])
    log_q = torch.log((k * sampler.target_share + k * sampler.probs).clamp(min=1e-12))
    log_q = log_q.to(target.device)
    pos_logits = (hidden * vectors[target]).sum(dim=1)
    neg_logits = hidden @ vectors[pool].T
    valid = pool[None, :] != target[:, None]
    return losses.sampled_softmax(
        pos_logits, neg_logits, valid, log_q[target], log_q[pool][None, :]
    )


def id_keep_mask(n_items: int, drop: float, device: torch.device | None = None) -> torch.Tensor:
    """[n_items] 0/1: which items keep their ID vector in this training step. A dropped item
    is seen as a new one is (content only), so content alone learns to rank it."""
    # Drawn on the CPU wherever the model runs, so a seed gives the same mask.
    return (torch.rand(n_items) >= drop).float().to(device)


def step_id_keep(
    module: nn.Module, drop: float, device: torch.device | None = None
) -> torch.Tensor:
    """``module``'s ID keep mask (over its ``n_items``) for the current training step: drawn
    on first use and reused until ``new_training_step``, so a step's histories (inputs) and
    the items it scores (outputs) drop the same IDs."""
    keep = module.__dict__.get("_id_keep")
    if keep is None or len(keep) != module.n_items:
        keep = id_keep_mask(module.n_items, drop, device)
        module.__dict__["_id_keep"] = keep  # a plain attribute: not a buffer, never saved
    return keep


def new_training_step(model: nn.Module) -> None:
    """Forgets every submodule's ID keep mask, so the next step draws fresh ones."""
    for module in model.modules():
        module.__dict__.pop("_id_keep", None)


class NegativeSampler:
    """Draws negative items uniformly or in proportion to training popularity, among the
    items seen in training (``known``; all when None). It lives on the CPU, where the
    training generator is; callers move its draws to the model's device."""

    def __init__(
        self,
        n_items: int,
        popularity: torch.Tensor | None = None,
        known: torch.Tensor | None = None,
        counts: torch.Tensor | None = None,
    ) -> None:
        self.n_items = n_items
        known = None if known is None else known.cpu()
        counts = None if counts is None else counts.cpu()
        popularity = None if popularity is None else popularity.cpu()
        allowed = torch.ones(n_items) if known is None else known.double()
        # Each item's share of the training targets (counts: its training interactions),
        # for the in-batch correction; uniform over the allowed items without counts.
        share = allowed if counts is None else counts.double() * allowed
        self.target_share = (share / share.sum()).float()
        if popularity is None:
            weights = allowed.double()
        else:
            weights = (popularity.double() + 1e-9) * allowed
        self.probs = (weights / weights.sum()).float()
        self.uniform = popularity is None and (known is None or bool(known.all()))

    def sample(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        count = math.prod(shape)
        if self.uniform:
            return torch.randint(self.n_items, shape, generator=generator)
        return torch.multinomial(self.probs, count, replacement=True, generator=generator).view(
            shape
        )

    def log_expected_count(self, k: int) -> torch.Tensor:
        return torch.log(self.probs * k)
