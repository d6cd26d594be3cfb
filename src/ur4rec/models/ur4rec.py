"""UR4Rec: SASRec and the text preference retriever, with memory, fused.

``objective`` selects what is trained and scored: ``sasrec`` alone, ``retriever`` alone, or
``fused`` (both branches, normalised and combined by the fusion module). The four-stage
schedule in ``train/stages.py`` moves through them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ur4rec.config import (
    STAGE_MODULES,
    FusionConfig,
    MemoryConfig,
    ModelConfig,
    RetrieverConfig,
)
from ur4rec.data.splits import PAD
from ur4rec.eval.evaluator import HistoryBatch
from ur4rec.models import losses
from ur4rec.models.ease import recent_item_scores
from ur4rec.models.fusion import Fusion
from ur4rec.models.memory import WindowMemory
from ur4rec.models.retriever import CoAttentionReranker, Retriever
from ur4rec.models.sasrec import SASRec

OBJECTIVES = ("sasrec", "retriever", "fused")
MODULES = STAGE_MODULES  # what a stage may name in `train`


class UR4Rec(nn.Module):
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
    ) -> None:
        super().__init__()
        self.n_items = n_items
        self.retriever_cfg = retriever_cfg
        features = item_text if fusion_cfg.sasrec_text_features else None
        self.sasrec = SASRec(n_items, max_len, model_cfg, item_features=features)
        self.retriever = Retriever(n_items, item_text, user_text, max_len, retriever_cfg)
        dim = retriever_cfg.dim
        self.memory = WindowMemory(n_windows, n_users, dim) if memory_cfg.enabled else None
        self.fusion = Fusion(fusion_cfg, model_cfg.hidden, dim)
        self.reranker = CoAttentionReranker(dim) if retriever_cfg.rerank_top > 0 else None
        self.text_encoder = text_encoder
        self.user_texts = user_texts
        self.objective = "fused"
        self.write_memory = False
        # EASE's item-item matrix (fusion.prior): fitted from the data at build, not saved.
        self.register_buffer("prior", prior, persistent=False)
        self.prior_recent = fusion_cfg.prior_recent
        # Per-position preference texts for training (set_training_user_texts).
        self.register_buffer("train_user_text", None, persistent=False)
        self.register_buffer("train_user_text_rows", None, persistent=False)

    def set_training_user_texts(self, embeddings: torch.Tensor, rows: torch.Tensor) -> None:
        """Preference texts for training positions: ``rows[w, j]`` indexes ``embeddings`` with
        the text written from the items before window w's j-th target. Without them every
        position reads the user's final text, which describes the later training targets too.
        Inputs, not weights: kept out of checkpoints."""
        self.register_buffer("train_user_text", embeddings.float(), persistent=False)
        self.register_buffer("train_user_text_rows", rows.long(), persistent=False)

    # -- modules, for the stages ------------------------------------------------------
    def module_parameters(self) -> dict[str, list[nn.Parameter]]:
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
            out["prior"] = recent_item_scores(self.prior, items, self.prior_recent)
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
        )
        out["sasrec_weight"] = weight
        return fused

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.combine(self.branch_scores(batch))

    # -- training ---------------------------------------------------------------------
    def training_loss(
        self,
        users: torch.Tensor,
        windows: torch.Tensor,
        inputs: torch.Tensor,
        targets: torch.Tensor,
        generator: torch.Generator,
    ) -> torch.Tensor:
        keep = targets != PAD
        target = targets[keep]
        loss = torch.zeros(())
        seq_logits = seq_state = ret_logits = ret_state = None
        if self.objective in ("sasrec", "fused"):
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
        if self.objective == "sasrec":
            return loss + F.cross_entropy(seq_logits, target)
        ret_loss = self._retriever_loss(ret_logits, target, generator)
        if self.objective == "retriever":
            return loss + ret_loss
        fused, _ = self.fusion(seq_logits, ret_logits, seq_state, ret_state)
        fused_loss = F.cross_entropy(fused * self.fusion.log_scale.exp(), target)
        seq_loss = F.cross_entropy(seq_logits, target)
        return loss + fused_loss + self.fusion.branch_loss(seq_loss, ret_loss)

    def _retriever_loss(
        self, logits: torch.Tensor, target: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        kind = self.retriever_cfg.loss
        if kind == "full":
            return F.cross_entropy(logits, target)
        if kind == "in_batch":
            # The batch's own targets are the candidates: a softmax over the columns they use.
            columns, index = torch.unique(target, return_inverse=True)
            return F.cross_entropy(logits[:, columns], index)
        # mined: the model's own hardest items plus as many uniform ones.
        k = min(self.retriever_cfg.negatives, self.n_items - 1)
        masked = logits.detach().scatter(1, target[:, None], float("-inf"))
        hard = masked.topk(k, dim=1).indices
        uniform = torch.randint(self.n_items, (len(target), k), generator=generator)
        negatives = torch.cat([hard, uniform], dim=1)
        pos = logits.gather(1, target[:, None]).squeeze(1)
        neg = logits.gather(1, negatives)
        return losses.sampled_softmax(pos, neg, negatives != target[:, None])
