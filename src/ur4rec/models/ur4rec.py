"""UR4Rec: SASRec and the text preference retriever, with memory, fused.

``objective`` selects what is trained and scored: ``sasrec`` alone, ``retriever`` alone, or
``fused`` (both branches, normalised and combined by the fusion module). A staged config
(``stages:``) moves through them; after a fused stage, fixed or scalar fusion weights are
chosen on validation (``calibrate``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ur4rec.config import (
    FusionConfig,
    MemoryConfig,
    ModelConfig,
    RetrieverConfig,
    RunConfig,
    StageConfig,
)
from ur4rec.data.batches import HistoryBatch, TrainBatch, last_items
from ur4rec.data.splits import PAD, interaction_counts
from ur4rec.errors import Ur4recError
from ur4rec.models import losses
from ur4rec.models.base import (
    Calibration,
    ModelInputs,
    RecModel,
    ValidationSet,
    model_class,
    register,
    trained_items,
)
from ur4rec.models.cooccurrence import neighbour_scores, rp3beta_neighbours
from ur4rec.models.ease import ease_weights, recent_item_scores
from ur4rec.models.fusion import COOCCURRENCE_WEIGHTS, Fusion, standardise
from ur4rec.models.memory import WindowMemory
from ur4rec.models.retriever import CoAttentionReranker, Retriever
from ur4rec.models.sequential import SequentialModel, new_training_step
from ur4rec.text.features import TextFeatures

OBJECTIVES = ("fused", "sasrec", "retriever")  # the first is the default
SASREC_GRID = tuple(step / 20 for step in range(21))  # SASRec's fusion weight: 0, 0.05, .., 1
PRIOR_GRID = tuple(step / 10 for step in range(11))  # the EASE prior's weight: 0, 0.1, .., 1
# The co-occurrence branch's weights (fusion.cooccurrence), calibrated after the others: on
# every item, on rare items, and the rare items' bonus. Small values: the branch corrects the
# others where they are blind and swamps them at weights near theirs (benchmarks/rare_items.py).
COOCCURRENCE_GRID = (0.0, 0.1, 0.2, 0.3)
RARE_WEIGHT_GRID = (0.0, 0.15, 0.25, 0.35)
RARE_BONUS_GRID = (0.0, 0.15, 0.3)


@register
class UR4Rec(RecModel):
    name = "ur4rec"
    uses_text = True
    objectives = OBJECTIVES
    module_names = ("sasrec", "retriever", "memory", "fusion", "text_encoder")
    branches = ("sasrec", "retriever", "prior", "cooccurrence")

    def __init__(
        self,
        n_users: int,
        n_items: int,
        max_len: int,
        model_cfg: ModelConfig,
        retriever_cfg: RetrieverConfig,
        fusion_cfg: FusionConfig,
        memory_cfg: MemoryConfig,
        item_text: torch.Tensor,
        user_text: torch.Tensor,
        n_windows: int,
        text_encoder: nn.Module | None = None,
        user_texts: list[str] | None = None,
        prior: torch.Tensor | None = None,
        cooccurrence: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.retriever_cfg = retriever_cfg
        features = item_text if fusion_cfg.sasrec_text_features else None
        # The ID branch: SASRec or another sequential model (model.backbone). It keeps the
        # name "sasrec" in module, branch and stage names whatever it is.
        backbone = model_class(model_cfg.backbone)
        if not issubclass(backbone, SequentialModel):
            raise Ur4recError(f"model.backbone {model_cfg.backbone!r} is not a sequential model")
        self.sasrec = backbone.create(n_items, max_len, model_cfg, features)
        self.retriever = Retriever(n_items, item_text, user_text, max_len, retriever_cfg)
        dim = retriever_cfg.dim
        self.memory = WindowMemory(n_windows, n_users, dim) if memory_cfg.enabled else None
        self.fusion = Fusion(fusion_cfg, model_cfg.hidden, dim)
        self.reranker = CoAttentionReranker(dim) if retriever_cfg.rerank_top > 0 else None
        self.text_encoder = text_encoder
        self.user_texts = user_texts
        self.objective = "fused"
        self.write_memory = False
        self.fusion_cfg = fusion_cfg
        # EASE's item-item matrix (fusion.prior): fitted from the data at build, not saved.
        self.register_buffer("prior", prior, persistent=False)
        self.prior_recent = fusion_cfg.prior_recent
        # RP3beta's neighbour lists (fusion.cooccurrence): fitted at build, likewise.
        indices, weights = cooccurrence if cooccurrence is not None else (None, None)
        self.register_buffer("cooc_indices", indices, persistent=False)
        self.register_buffer("cooc_weights", weights, persistent=False)
        # Per-position preference texts for training (set_training_user_texts).
        self.register_buffer("train_user_text", None, persistent=False)
        self.register_buffer("train_user_text_rows", None, persistent=False)
        self.register_buffer("known", None, persistent=False)  # trained items; None: all
        # Added to every training softmax's logits only (loss.logit_adjust); None: off.
        self.register_buffer("train_bias", None, persistent=False)

    @classmethod
    def build(cls, inputs: ModelInputs) -> UR4Rec:
        cfg, dataset, texts, windows = inputs.cfg, inputs.dataset, inputs.texts, inputs.windows
        saved = inputs.saved
        if saved is not None:
            texts = TextFeatures(saved["item_text"], saved["user_text"], saved["user_texts"])
        if texts is None:
            raise ValueError("UR4Rec needs text features")
        encoder = None
        if cfg.text.trainable_layers > 0:
            from ur4rec.text.encoder import TrainableTextEncoder

            encoder = TrainableTextEncoder(cfg.text.encoder, cfg.text.trainable_layers)
        prior = None
        if saved is not None:
            prior = saved.get("prior")
        elif cfg.fusion.prior == "ease":
            prior = ease_weights(dataset, inputs.train, cfg.fusion.prior_l2)
        f = cfg.fusion
        cooccurrence = None
        if f.cooccurrence == "rp3beta":
            if saved is not None and "cooccurrence_indices" in saved:
                cooccurrence = (saved["cooccurrence_indices"], saved["cooccurrence_weights"])
            else:  # also a run saved without the branch, given it later (a cheap fit)
                cooccurrence = rp3beta_neighbours(
                    dataset, inputs.train, f.cooccurrence_alpha, f.cooccurrence_beta,
                    f.cooccurrence_top,
                )  # fmt: skip
        model = cls(
            dataset.n_users, dataset.n_items, cfg.data.max_len, cfg.model, cfg.retriever,
            cfg.fusion, cfg.memory, texts.item, texts.user, len(windows) if windows else 0,
            text_encoder=encoder, user_texts=texts.user_texts, prior=prior,
            cooccurrence=cooccurrence,
        )  # fmt: skip
        model.fusion_cfg = cfg.fusion
        model.set_known_items(trained_items(inputs))
        if cooccurrence is not None or cfg.loss.logit_adjust > 0:
            counts = torch.from_numpy(interaction_counts(dataset, inputs.train))
            if cooccurrence is not None:
                model.fusion.set_rare_items((counts >= 1) & (counts < f.rare_below))
            if cfg.loss.logit_adjust > 0:
                model.train_bias = losses.popularity_bias(counts, cfg.loss.logit_adjust)
        if model.memory is not None and windows is not None:
            model.memory.bind(windows.later, windows.last_window)
        if texts.snapshots is not None and windows is not None:
            from ur4rec.text.corpus import snapshot_rows

            rows = snapshot_rows(
                windows.users.numpy(),
                windows.positions[:, 1:].numpy(),
                texts.snapshot_first_row,
                cfg.text.user_text_every,
            )
            model.set_training_user_texts(texts.snapshots, torch.from_numpy(rows))
        return model

    def set_known_items(self, known: torch.Tensor) -> None:
        """The items seen in training: the rest have no ID vectors, no training class and are
        scored by the branches that read text (models/fusion.py)."""
        self.register_buffer("known", known.bool(), persistent=False)
        self.sasrec.set_known_items(known)
        self.retriever.set_known_items(known)
        self.fusion.set_new_items(~known, self.sasrec.feature_proj is not None)

    def add_items(self, item_text: torch.Tensor) -> None:
        """New items: the text-reading branches place them; an ID-only SASRec branch gives
        its weight for them to the retriever, and the EASE prior and co-occurrence (fitted on
        the trained catalogue) score them 0."""
        added = len(item_text)
        self.sasrec.add_items(item_text if self.sasrec.feature_proj is not None else None)
        self.retriever.add_items(item_text)
        known = self.known if self.known is not None else torch.ones(self.n_items, dtype=bool)
        self.n_items += added
        # Not set_known_items: that would drop the branches' item caches just extended.
        self.register_buffer("known", torch.cat([known, known.new_zeros(added)]), persistent=False)
        if self.train_bias is not None:
            self.train_bias = torch.cat([self.train_bias, self.train_bias.new_zeros(added)])
        if self.fusion.rare_items is not None:  # a new item has no interactions: not rare
            rare = self.fusion.rare_items.bool()
            self.fusion.set_rare_items(torch.cat([rare, rare.new_zeros(added)]))
        self.fusion.set_new_items(~self.known, self.sasrec.feature_proj is not None)

    def _prior_scores(self, items: torch.Tensor) -> torch.Tensor:
        """EASE over the last items, [B, n_items]; items added after fitting score 0 and
        count for nothing in a history."""
        assert self.prior is not None
        fitted = len(self.prior)
        if self.prior_recent > 0:
            items = items[:, -self.prior_recent :]
        items = items.masked_fill(items >= fitted, PAD)
        scores = recent_item_scores(self.prior, items)
        return F.pad(scores, (0, self.n_items - fitted))

    def _cooccurrence_scores(self, items: torch.Tensor) -> torch.Tensor:
        """RP3beta over the history, [B, n_items]; items added after fitting score 0."""
        assert self.cooc_indices is not None and self.cooc_weights is not None
        return neighbour_scores(self.cooc_indices, self.cooc_weights, items, self.n_items)

    def set_training_user_texts(self, embeddings: torch.Tensor, rows: torch.Tensor) -> None:
        """Preference texts for training positions: ``rows[w, j]`` indexes ``embeddings`` with
        the text written from the items before window w's j-th target. Without them every
        position reads the user's final text, which describes the later training targets too.
        Inputs, not weights: kept out of checkpoints."""
        self.register_buffer("train_user_text", embeddings.float(), persistent=False)
        self.register_buffer("train_user_text_rows", rows.long(), persistent=False)

    # -- modules, for the stages ------------------------------------------------------
    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        groups: dict[str, list[nn.Parameter]] = {
            "sasrec": list(self.sasrec.parameters()),
            "retriever": list(self.retriever.parameters())
            + (list(self.reranker.parameters()) if self.reranker else []),
            "memory": list(self.memory.parameters()) if self.memory else [],
            "fusion": list(self.fusion.parameters()),
            # Not "whatever requires grad now": an earlier stage may have frozen them.
            "text_encoder": self.text_encoder.trainable_parameters()
            if self.text_encoder is not None
            else [],
        }
        return groups

    def on_epoch_start(self, epoch: int, epochs: int) -> None:
        self.fusion.set_progress(epoch / max(epochs - 1, 1))

    def set_objective(self, objective: str) -> None:
        super().set_objective(objective)
        self.objective = objective or OBJECTIVES[0]

    def begin_stage(self, objective: str, modules: list[str]) -> None:
        self.set_objective(objective)
        self.write_memory = "memory" in modules

    def calibrate(
        self, valid: ValidationSet, metric: str, stages: Sequence[StageConfig]
    ) -> Calibration | None:
        """After a fused stage with fixed or scalar fusion: SASRec's weight (SASREC_GRID; 1
        alone while no stage has trained the retriever, which is noise until then) and, with
        an EASE prior, the prior's weight (PRIOR_GRID), chosen on validation."""
        cfg = self.fusion_cfg
        if not (stages[-1].objective in ("", "fused") and cfg.calibrate):
            return None
        if cfg.method not in ("fixed", "scalar"):
            return None
        trained = any("retriever" in s.train for s in stages)
        cached = self._validation_branches(valid)
        priors: tuple[float | None, ...] = PRIOR_GRID if self.prior is not None else (None,)
        if self.cooc_indices is not None:  # chosen afterwards, from the others' best
            self.fusion.set_cooccurrence_weights(0.0, 0.0, 0.0)
        points = [
            {"sasrec_weight": weight, **({"prior_weight": prior} if prior is not None else {})}
            for weight in (SASREC_GRID if trained else (1.0,))
            for prior in priors
        ]
        best = self._best_on_grid(valid, metric, cached, points)
        if self.cooc_indices is not None:
            rare = self.calibrate_cooccurrence(valid, metric, cached)
            best = Calibration({**best.chosen, **rare.chosen}, rare.metrics)
        return best

    def calibrate_cooccurrence(
        self,
        valid: ValidationSet,
        metric: str,
        cached: list[dict[str, torch.Tensor]] | None = None,
    ) -> Calibration:
        """The co-occurrence branch's weights (COOCCURRENCE_GRID x RARE_WEIGHT_GRID x
        RARE_BONUS_GRID) with the other fusion weights as they are, chosen on validation by
        ``metric``; applied and returned. All zero (the branch off) is on the grid."""
        if self.cooc_indices is None:
            raise Ur4recError("this model has no co-occurrence branch (fusion.cooccurrence)")
        if cached is None:
            cached = self._validation_branches(valid)
        points = [
            {"cooccurrence_weight": weight, "rare_weight": rare_weight, "rare_bonus": bonus}
            for weight in COOCCURRENCE_GRID
            for rare_weight in RARE_WEIGHT_GRID
            for bonus in RARE_BONUS_GRID
        ]
        return self._best_on_grid(valid, metric, cached, points)

    def _best_on_grid(
        self,
        valid: ValidationSet,
        metric: str,
        cached: list[dict[str, torch.Tensor]],
        points: list[dict[str, float]],
    ) -> Calibration:
        """The point with the best validation ``metric`` (the first among ties), each scored
        from the ``cached`` branch scores; applied and returned."""
        best: Calibration | None = None
        for chosen in points:
            self.apply_calibration(chosen)
            metrics = _metrics(valid.evaluate(_ReplayedBranches(self, cached)))
            if best is None or metrics[metric] > best.metrics[metric]:
                best = Calibration(chosen, metrics)
        assert best is not None
        self.apply_calibration(best.chosen)
        return best

    def _validation_branches(self, valid: ValidationSet) -> list[dict[str, torch.Tensor]]:
        """The fused objective's branch scores of every validation batch, in order."""
        self.eval()
        self.objective = "fused"
        with torch.inference_mode():
            return [self.branch_scores(batch) for _, batch in valid.batches()]

    def apply_calibration(self, chosen: dict[str, float]) -> None:
        if "sasrec_weight" in chosen:
            self.fusion.set_weight(chosen["sasrec_weight"])
        if "prior_weight" in chosen:
            self.fusion.set_prior_weight(chosen["prior_weight"])
        if "cooccurrence_weight" in chosen:
            self.fusion.set_cooccurrence_weights(
                chosen["cooccurrence_weight"], chosen["rare_weight"], chosen["rare_bonus"]
            )

    # -- branches ---------------------------------------------------------------------
    def _user_text(self, users: torch.Tensor) -> torch.Tensor | None:
        if self.text_encoder is None or self.user_texts is None:
            return None
        texts = [self.user_texts[u] for u in users.tolist()]
        return self.text_encoder(texts)

    def _retriever_states(
        self,
        users: torch.Tensor,
        items: torch.Tensor,
        memory: torch.Tensor | None,
        user_text: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if user_text is None:
            user_text = self._user_text(users)
        return self.retriever.user_states(users, items, memory, user_text, last_only)

    # -- scoring (evaluation and serving) -----------------------------------------------
    def branch_scores(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Per-branch scores and states for the last position of each history.

        ``user_text`` [B, text_dim] replaces the stored preference-text embeddings; users the
        model has never seen (id -1) must bring one.
        """
        items = self.sasrec.left_align(batch.items)
        out: dict[str, torch.Tensor] = {}
        if self.objective in ("sasrec", "fused"):
            state = self.sasrec.encode(items)[:, -1]
            out["sasrec"], out["sasrec_state"] = state @ self.sasrec.item_vectors().T, state
        if self.objective in ("retriever", "fused"):
            known = batch.users >= 0
            if user_text is None and not bool(known.all()) and self.retriever_cfg.preference_text:
                raise ValueError("users unknown to the model need a preference-text embedding")
            memory = None
            if self.memory is not None:
                memory = self.memory.read_users(batch.users.clamp(min=0)) * known[:, None]
            vectors, weights, _ = self._retriever_states(
                batch.users.clamp(min=0), items, memory, user_text, last_only=True
            )
            vector = vectors[:, -1]
            scores = self.retriever.logits(vector)
            if self.reranker is not None:
                scores = self._rerank(scores, vector, items)
            out["retriever"], out["retriever_state"] = scores, vector
            out["router"] = weights[:, -1]
        if self.objective == "fused" and self.prior is not None:
            out["prior"] = self._prior_scores(items)
            # Always this wide, so every user's row stacks into one matrix.
            width = self.prior_recent if self.prior_recent > 0 else self.sasrec.max_len
            out["prior_items"] = F.pad(items, (width, 0), value=PAD)[:, -width:]
        if self.objective == "fused" and self.cooc_indices is not None:
            # More of the history than SASRec's window: co-occurrence is a sum over it.
            history = last_items(batch.items, self.fusion_cfg.cooccurrence_recent)
            out["cooccurrence"] = self._cooccurrence_scores(history)
            out["cooccurrence_items"] = history
        return out

    def _rerank(
        self, scores: torch.Tensor, user: torch.Tensor, items: torch.Tensor
    ) -> torch.Tensor:
        """The top-N by cosine are reordered by the co-attention scorer and kept on top."""
        top = scores.topk(min(self.retriever_cfg.rerank_top, scores.shape[1]), dim=1).indices
        candidates = self.retriever.item_vectors()[top]
        history = self.retriever.history_tokens(items)
        rerank = self.reranker(user, candidates, history, items != PAD)
        ceiling = scores.max(dim=1, keepdim=True).values
        return scores.scatter(1, top, ceiling + 1.0 + torch.sigmoid(rerank))

    def combine(self, out: dict[str, torch.Tensor]) -> torch.Tensor:
        """The model's scores from ``branch_scores``; a fused model also leaves its SASRec
        weight in ``out["sasrec_weight"]``."""
        if self.objective == "sasrec":
            return out["sasrec"]
        if self.objective == "retriever":
            return out["retriever"]
        fused, weight = self.fusion(
            out["sasrec"],
            out["retriever"],
            out["sasrec_state"],
            out["retriever_state"],
            out.get("prior"),
            out.get("cooccurrence"),
        )
        out["sasrec_weight"] = weight
        return fused

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.combine(self.branch_scores(batch))

    # -- the model interface, for serving ---------------------------------------------
    def user_states(
        self, batch: HistoryBatch, user_text: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        out = self.branch_scores(batch, user_text=user_text)
        if self.reranker is None:  # the scores follow from the states: recomputed later
            out.pop("sasrec", None)
            out.pop("retriever", None)
            out.pop("prior", None)  # from prior_items: so items added later are scored too
            out.pop("cooccurrence", None)  # likewise, from cooccurrence_items
        return out

    def scores_from_states(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(states)
        if "sasrec_state" in out and "sasrec" not in out:
            out["sasrec"] = out["sasrec_state"] @ self.sasrec.item_vectors().T
        if "retriever_state" in out and "retriever" not in out:
            out["retriever"] = self.retriever.logits(out["retriever_state"])
        if "prior_items" in out and "prior" not in out:
            out["prior"] = self._prior_scores(out["prior_items"])
        if "cooccurrence_items" in out and "cooccurrence" not in out:
            out["cooccurrence"] = self._cooccurrence_scores(out["cooccurrence_items"])
        out["score"] = self.combine(out)
        return out

    @property
    def states_per_user(self) -> bool:
        return self.reranker is None  # the reranker reads each history

    def known_user_texts(self) -> list[str] | None:
        return self.user_texts

    def preference_vectors(
        self,
        users: torch.Tensor,
        texts: list[str | None],
        vectors: list[torch.Tensor | None],
    ) -> torch.Tensor | None:
        if self.text_encoder is not None:  # its last layers were trained: use them
            return self.text_encoder(list(texts))
        stored = self.retriever.user_text
        return torch.stack(
            [stored[int(u)] if v is None else v for u, v in zip(users, vectors, strict=True)]
        )

    def item_space(self) -> torch.Tensor:
        return self.retriever.item_vectors()

    def item_text_vectors(self) -> torch.Tensor | None:
        return self.retriever.item_text

    def describe_config(self, cfg: RunConfig) -> str:
        r = cfg.retriever
        text = (
            f"UR4Rec: {self.sasrec.summary(cfg)}, fused with a text preference retriever. The "
            "retriever matches a user vector (built from the user's preference text and the "
            "items so far, encoded by the sentence encoder) against every item's description "
            f"vector by cosine similarity; {r.experts} expert heads mixed by a router and "
            f"{r.proxies} learned proxy tokens shape the user vector. Both branches' scores are "
            f"standardised per user and mixed by the `{cfg.fusion.method}` fusion method."
        )
        if cfg.fusion.prior == "ease":
            text += (
                " A third branch that never trains, EASE fitted on the training part and "
                f"reading the user's last {cfg.fusion.prior_recent} items, is added at scoring "
                "time with a weight chosen on validation."
            )
        if cfg.fusion.cooccurrence == "rp3beta":
            f = cfg.fusion
            text += (
                " Another untrained branch, RP3beta item-item co-occurrence (alpha "
                f"{f.cooccurrence_alpha:g}, beta {f.cooccurrence_beta:g}, {f.cooccurrence_top} "
                "neighbours per item) over the user's items, is added at scoring time, with "
                f"more weight and a bonus on rare items (1 to {f.rare_below - 1} training "
                "interactions), the three weights chosen on validation."
            )
        return text

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.prior is not None:
            out["prior_weight"] = round(float(self.fusion.prior_weight), 4)
        if self.cooc_indices is not None:
            for key in COOCCURRENCE_WEIGHTS:
                out[key] = round(float(getattr(self.fusion, key)), 4)
        return out

    def prepare_for_inference(self) -> None:
        self.sasrec.cache_item_vectors()
        self.retriever.cache_item_vectors()
        self.__dict__["_moments"] = {}  # the branches' item-vector moments, for candidates

    # -- serving from candidates (an ANN index, serve/index.py) -------------------------
    def dot_branches(self) -> dict[str, torch.Tensor] | None:
        if self.reranker is not None:  # it reads each history: no index can stand in
            return None
        out = {}
        if self.objective in ("sasrec", "fused"):
            out["sasrec"] = self.sasrec.item_vectors()
        if self.objective in ("retriever", "fused"):
            out["retriever"] = self.retriever.item_vectors()
        return out

    def branch_queries(self, states: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        queries = {}
        if "sasrec_state" in states:
            queries["sasrec"] = states["sasrec_state"]
        if "retriever_state" in states:  # its logits are cosines over the temperature
            queries["retriever"] = states["retriever_state"] / self.retriever_cfg.temperature
        return queries

    def candidate_scores(
        self, states: dict[str, torch.Tensor], items: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The fused score of the candidates alone. Per-user standardisation needs each
        branch's mean and spread over all items, which follow exactly from the item vectors'
        mean and covariance (u.mu and u' S u): no pass over the catalogue per request."""
        vectors = self.dot_branches()
        assert vectors is not None
        queries = self.branch_queries(states)
        out = {b: torch.einsum("bcd,bd->bc", vectors[b][items], q) for b, q in queries.items()}
        if self.objective != "fused":
            out["score"] = out[self.objective]
            return out
        weight = self.fusion.sasrec_weight(states["sasrec_state"], states["retriever_state"])
        new = self.fusion.new_items
        z_ret = self._standardised("retriever", out["retriever"], queries["retriever"], None)
        if new is None or self.fusion.sasrec_scores_new:
            z_seq = self._standardised("sasrec", out["sasrec"], queries["sasrec"], None)
            fused = weight * z_seq + (1 - weight) * z_ret
        else:
            z_seq = self._standardised("sasrec", out["sasrec"], queries["sasrec"], ~new)
            fused = torch.where(new[items], z_ret, weight * z_seq + (1 - weight) * z_ret)
        if "prior_items" in states:  # EASE: a sum of a few of its rows, computed whole
            prior = self._prior_scores(states["prior_items"])
            z_prior = standardise(prior, over=None if new is None else ~new)
            if new is not None:
                z_prior = z_prior.masked_fill(new, 0.0)
            fused = fused + self.fusion.prior_weight * z_prior.gather(1, items)
            out["prior"] = prior.gather(1, items)
        if "cooccurrence_items" in states:  # likewise: a sum of rows, computed whole
            cooccurrence = self._cooccurrence_scores(states["cooccurrence_items"])
            fused = fused + self.fusion.cooccurrence_term(cooccurrence).gather(1, items)
            out["cooccurrence"] = cooccurrence.gather(1, items)
        out["score"], out["sasrec_weight"] = fused, weight
        return out

    def _standardised(
        self, branch: str, scores: torch.Tensor, query: torch.Tensor, over: torch.Tensor | None
    ) -> torch.Tensor:
        """``fusion.standardise`` of the candidates' ``scores`` (= query . item vector), with
        the statistics over the items ``over`` (all: None), from the vectors' moments."""
        mean, cov, n = self._branch_moments(branch, over)
        q = query.double()
        mu = q @ mean
        var = ((q @ cov) * q).sum(dim=1) * (n / max(n - 1, 1))  # the unbiased std, as there
        return (scores - mu[:, None].float()) / (var.clamp(min=0).sqrt()[:, None].float() + 1e-6)

    def _branch_moments(
        self, branch: str, over: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor, int]:
        vectors = self.dot_branches()[branch]  # type: ignore[index]
        cache = self.__dict__.setdefault("_moments", {})
        # Items added since (a longer matrix) or new weights (another tensor): recomputed.
        key = (branch, vectors.data_ptr(), len(vectors), over is not None)
        if key not in cache:
            if len(cache) > 8:
                cache.clear()
            v = (vectors if over is None else vectors[over]).double()
            mean = v.mean(dim=0)
            centred = v - mean
            cache[key] = (mean, centred.T @ centred / len(v), len(v))
        return cache[key]

    def inference_inputs(self) -> dict[str, Any]:
        saved: dict[str, Any] = {
            "item_text": self.retriever.item_text,
            "user_text": self.retriever.user_text,
            "user_texts": self.user_texts,
        }
        if self.prior is not None:
            saved["prior"] = self.prior
        if self.cooc_indices is not None:
            saved["cooccurrence_indices"] = self.cooc_indices
            saved["cooccurrence_weights"] = self.cooc_weights
        return saved

    # -- training ---------------------------------------------------------------------
    def training_loss(self, batch: TrainBatch, generator: torch.Generator) -> torch.Tensor:
        new_training_step(self)
        users, windows, inputs, targets = batch.users, batch.windows, batch.inputs, batch.targets
        keep = targets != PAD
        target = targets[keep]
        loss = torch.zeros((), device=inputs.device)
        seq_logits = seq_state = ret_logits = ret_state = None
        if self.objective == "sasrec":
            states = self.sasrec.encode(inputs)[keep]
            return losses.softmax_ce(
                states, self.sasrec.item_vectors(), target, self.known, bias=self.train_bias
            )
        if self.objective == "fused":
            states = self.sasrec.encode(inputs)[keep]
            seq_logits, seq_state = states @ self.sasrec.item_vectors().T, states
        if self.objective in ("retriever", "fused"):
            memory = self.memory.read_windows(windows) if self.memory is not None else None
            user_text = None
            if self.train_user_text_rows is not None:
                user_text = self.train_user_text[self.train_user_text_rows[windows]]
            vectors, _, balance = self._retriever_states(users, inputs, memory, user_text)
            if self.memory is not None and self.write_memory:
                self.memory.write(windows, vectors[:, -1])
            ret_state = vectors[keep]
            ret_logits = self.retriever.logits(ret_state)
            loss = loss + self.retriever_cfg.load_balance * balance
        known, bias = self.known, self.train_bias
        ret_loss = self._retriever_loss(ret_logits, target, generator)
        if self.objective == "retriever":
            return loss + ret_loss
        fused, _ = self.fusion(seq_logits, ret_logits, seq_state, ret_state)
        fused_loss = losses.full_softmax_ce(
            fused * self.fusion.log_scale.exp(), target, known, bias
        )
        seq_loss = losses.full_softmax_ce(seq_logits, target, known, bias)
        return loss + fused_loss + self.fusion.branch_loss(seq_loss, ret_loss)

    def _retriever_loss(
        self, logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        kind = self.retriever_cfg.loss
        if kind == "full":
            return losses.full_softmax_ce(logits, target, self.known, self.train_bias)
        if kind == "in_batch":
            # The batch's own targets are the candidates: a softmax over the columns they use.
            columns, index = torch.unique(target, return_inverse=True)
            return F.cross_entropy(logits[:, columns], index)
        # mined: the model's own hardest items plus as many uniform ones.
        k = min(self.retriever_cfg.negatives, self.n_items - 1)
        masked = losses.only_known(logits.detach(), self.known)
        masked = masked.scatter(1, target[:, None], float("-inf"))
        hard = masked.topk(k, dim=1).indices
        pool = torch.arange(self.n_items) if self.known is None else self.known.nonzero()[:, 0]
        # Drawn from the (CPU) training generator wherever the model runs: the same draws.
        draw = torch.randint(len(pool), (len(target), k), generator=generator)
        uniform = pool.to(target.device)[draw.to(target.device)]
        negatives = torch.cat([hard, uniform], dim=1)
        pos = logits.gather(1, target[:, None]).squeeze(1)
        neg = logits.gather(1, negatives)
        return losses.sampled_softmax(pos, neg, negatives != target[:, None])


def _metrics(result: dict[str, Any]) -> dict[str, float]:
    return {k: v for k, v in result.items() if "@" in k}


class _ReplayedBranches:
    """Replays the branch scores of each validation batch, in the evaluator's order, so that
    only the fusion weights change between calibration points."""

    def __init__(self, model: UR4Rec, cached: list[dict[str, torch.Tensor]]) -> None:
        self.model, self.cached, self.batch = model, cached, 0
        self.seen_items_last = model.seen_items_last  # ranked as the model itself is

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        out = dict(self.cached[self.batch])
        self.batch += 1
        return self.model.combine(out)
