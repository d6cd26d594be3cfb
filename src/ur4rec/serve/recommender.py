"""Recommendations from a trained run: top-k unseen items, per-branch scores, explanations.

A :class:`Recommender` loads a run folder once (any model: SASRec or UR4Rec) and precomputes
every item's vectors, so a request is one history encoding and one product with the item
matrix. Known users are scored on their whole history (every interaction the data holds, all
of it excluded from the results); a new user brings a history of raw item ids and, for UR4Rec,
optionally a preference text (otherwise one is written from the history by the template).

Explanations come from the text side and the item space: the sentence of the user's
preference text nearest to the item (both embedded by the run's sentence encoder), the history
item nearest to it in the model's own item space, and the retriever's expert (router) weights.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import HistoryBatch
from ur4rec.text.history import SeenItem, UserHistory
from ur4rec.text.templates import display_title, user_text

MAX_K = 1000


class UnknownIdError(Ur4recError):
    """A user or item id the run's dataset does not hold."""


@dataclass
class ItemRef:
    item: str
    title: str


@dataclass
class Explanation:
    preference_sentence: str | None = None
    preference_similarity: float | None = None
    history_item: ItemRef | None = None
    history_similarity: float | None = None


@dataclass
class Recommendation:
    rank: int
    item: str
    title: str
    score: float  # the model's score (fused: standardised units)
    scores: dict[str, float]  # each branch's own score (SASRec logit, retriever cosine / T)
    explanation: Explanation | None = None


@dataclass
class Recommendations:
    user: str | None  # raw id; None for an ad-hoc history
    model: str
    items: list[Recommendation]
    history_length: int
    sasrec_weight: float | None = None  # fusion weight, fused models only
    router: list[float] | None = None  # the retriever's expert weights for this user
    preference_text: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in parts if p]


class Recommender:
    """A trained run, ready to answer requests."""

    def __init__(self, run_dir: Path, data_dir: str | None = None, checkpoint: str = "best"):
        from ur4rec.train.run import load_run  # the training stack is only needed to load

        self.run_dir = Path(run_dir)
        self.cfg, self.dataset, self.model = load_run(self.run_dir, data_dir, checkpoint)
        self.model.eval()
        self.kind = self.cfg.model.name
        self.max_len = self.cfg.data.max_len
        self._sentence_cache: dict[str, torch.Tensor] = {}
        self._encoder: Any = None
        with torch.inference_mode():
            if self.kind == "ur4rec":
                self.model.sasrec.cache_item_vectors()
                space = self.model.retriever.cache_item_vectors()
                self.item_text = self.model.retriever.item_text  # sentence-encoder space
            else:
                space = self.model.cache_item_vectors()
                self.item_text = None
            # Explanations' "nearest history item" is measured in the model's own item space.
            self.item_space = F.normalize(space, dim=-1)
        self.titles = [display_title(info) for info in self.dataset.item_info]

    # -- ids ------------------------------------------------------------------------------
    @property
    def dataset_name(self) -> str:
        return self.dataset.name

    def user_index(self, raw_id: str) -> int:
        try:
            return self.dataset.user_index(str(raw_id))
        except Ur4recError:
            raise UnknownIdError(f"unknown user id {raw_id!r} in {self.dataset.name}") from None

    def item_indices(self, raw_ids: list[str]) -> list[int]:
        indices, unknown = [], []
        for raw in raw_ids:
            try:
                indices.append(self.dataset.item_index(str(raw)))
            except Ur4recError:
                unknown.append(str(raw))
        if unknown:
            shown = ", ".join(repr(u) for u in unknown[:5])
            raise UnknownIdError(f"unknown item id(s) {shown} in {self.dataset.name}")
        return indices

    # -- requests -------------------------------------------------------------------------
    def recommend_user(
        self, raw_user_id: str, k: int = 10, explain: bool = False
    ) -> Recommendations:
        """Top-k items the user has not interacted with, from their whole known history."""
        user = self.user_index(raw_user_id)
        history = self.dataset.sequence(user).tolist()
        text = None
        if self.kind == "ur4rec" and self.model.user_texts is not None:
            text = self.model.user_texts[user]
        return self._recommend(user, history, k, explain, text, None, str(raw_user_id))

    def recommend_history(
        self,
        raw_item_ids: list[str],
        k: int = 10,
        preference_text: str | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Top-k for a user the model has never seen, from an ad-hoc history (oldest first)."""
        if not raw_item_ids:
            raise Ur4recError("the history is empty: give at least one item id")
        history = self.item_indices(raw_item_ids)
        notes = []
        text_vector = None
        text = None
        if self.kind == "ur4rec":
            text = preference_text
            if text is None:
                text = user_text(self._ad_hoc_history(history))
                notes.append("no preference text given: written from the history by the template")
            text_vector = self._encode([text])
        elif preference_text is not None:
            notes.append("this run has no text side: the preference text is not used")
        result = self._recommend(-1, history, k, explain, text, text_vector, None)
        result.notes.extend(notes)
        return result

    def _ad_hoc_history(self, items: list[int]) -> UserHistory:
        # No ratings or times are known: every item counts as liked, in the given order.
        seen = tuple(
            SeenItem(self.dataset.item_ids[i], self.dataset.item_info[i], 4.0, t)
            for t, i in enumerate(items)
        )
        return UserHistory("ad-hoc", seen)

    # -- scoring --------------------------------------------------------------------------
    @torch.inference_mode()
    def _recommend(
        self,
        user: int,
        history: list[int],
        k: int,
        explain: bool,
        text: str | None,
        text_vector: torch.Tensor | None,
        raw_user: str | None,
    ) -> Recommendations:
        if not 1 <= k <= MAX_K:
            raise Ur4recError(f"k must be between 1 and {MAX_K}, got {k}")
        recent = history[-self.max_len :]
        batch = HistoryBatch(torch.tensor([user]), torch.tensor([recent], dtype=torch.long))
        router = weight = None
        if self.kind == "ur4rec":
            out = self.model.branch_scores(batch, user_text=text_vector)
            scores = self.model.combine(out)[0]
            branches = {b: out[b][0] for b in ("sasrec", "retriever") if b in out}
            if "router" in out:
                router = [round(float(w), 4) for w in out["router"][0]]
            if "sasrec_weight" in out:
                weight = round(float(out["sasrec_weight"].reshape(-1)[0]), 4)
        else:
            scores = self.model.score(batch)[0]
            branches = {"sasrec": scores}
        seen = torch.tensor(sorted(set(history)), dtype=torch.long)
        scores = scores.index_fill(0, seen, float("-inf"))
        top = scores.topk(min(k, self.dataset.n_items - len(seen)))
        items = top.indices.tolist()
        explanations = self._explain(items, history, text) if explain else [None] * len(items)
        recs = [
            Recommendation(
                rank=rank + 1,
                item=self.dataset.item_ids[item],
                title=self.titles[item],
                score=round(float(score), 4),
                scores={b: round(float(s[item]), 4) for b, s in branches.items()},
                explanation=explanation,
            )
            for rank, (item, score, explanation) in enumerate(
                zip(items, top.values.tolist(), explanations, strict=True)
            )
        ]
        return Recommendations(
            user=raw_user,
            model=self.kind,
            items=recs,
            history_length=len(history),
            sasrec_weight=weight,
            router=router,
            preference_text=text,
        )

    # -- explanations ---------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Sentence-encoder vectors of new texts (kept in memory, never written to disk)."""
        missing = [t for t in dict.fromkeys(texts) if t not in self._sentence_cache]
        if missing:
            if self._encoder is None:
                from ur4rec.text.encoder import TextEncoder

                self._encoder = TextEncoder(self.cfg.text.encoder, cache_dir=None)
            vectors = torch.from_numpy(self._encoder.encode(missing))
            self._sentence_cache.update(zip(missing, vectors, strict=True))
        return torch.stack([self._sentence_cache[t] for t in texts])

    def _explain(self, items: list[int], history: list[int], text: str | None) -> list[Explanation]:
        targets = torch.tensor(items, dtype=torch.long)
        past = torch.tensor(sorted(set(history)), dtype=torch.long)
        near = self.item_space[targets] @ self.item_space[past].T  # [k, |history|]
        best_sim, best_at = near.max(dim=1)
        sentences = split_sentences(text) if text and self.item_text is not None else []
        if sentences:
            assert self.item_text is not None
            match = self.item_text[targets] @ self._encode(sentences).T  # [k, sentences]
            sent_sim, sent_at = match.max(dim=1)
        out = []
        for row, _ in enumerate(items):
            neighbour = int(past[best_at[row]])
            explanation = Explanation(
                history_item=ItemRef(self.dataset.item_ids[neighbour], self.titles[neighbour]),
                history_similarity=round(float(best_sim[row]), 4),
            )
            if sentences:
                explanation.preference_sentence = sentences[int(sent_at[row])]
                explanation.preference_similarity = round(float(sent_sim[row]), 4)
            out.append(explanation)
        return out
