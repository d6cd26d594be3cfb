"""Recommendations from a trained run: top-k unseen items, per-branch scores, explanations.

A :class:`Recommender` loads a run folder once (any model, through the model interface) and
precomputes
every item's vectors and every known user's vectors (a known user's history does not change
while serving), so a request for a known user is one product with the item matrices; a new
user's history is run through the model. Known users are scored on their whole history (every
interaction the data holds, all of it excluded from the results); a new user brings a history
of raw item ids and, for UR4Rec, optionally a preference text (otherwise one is written from
the history by the template).

Explanations come from the text side and the item space: the sentence of the user's
preference text nearest to the item (both embedded by the run's sentence encoder), the history
item nearest to it in the model's own item space, and the retriever's expert (router) weights.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ur4rec.data.batches import HistoryBatch
from ur4rec.data.splits import PAD
from ur4rec.errors import Ur4recError
from ur4rec.models.fusion import COOCCURRENCE_WEIGHTS
from ur4rec.text.domain import domain_of
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
    sentence: str | None = None  # in words, from the evidence above (serve/explain.py)


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
    prior_weight: float | None = None  # the EASE prior's weight, when the model has one
    # The co-occurrence branch's weights (every item, rare items, rare bonus), when it has one.
    cooccurrence_weights: dict[str, float] | None = None
    router: list[float] | None = None  # the retriever's expert weights for this user
    preference_text: str | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Case:
    """One request: whom to score (user -1: never seen), on what history, and how."""

    user: int
    history: list[int]
    k: int
    explain: bool
    text: str | None
    text_vector: torch.Tensor | None
    raw_user: str | None


@dataclass
class HistoryQuery:
    """A request for a user the model has never seen: raw item ids (oldest first), how many
    items, an optional preference text, and whether to explain."""

    items: list[str]
    k: int = 10
    text: str | None = None
    explain: bool = False


class LRUCache:
    """A dict that keeps at most ``size`` entries, dropping the least recently used."""

    def __init__(self, size: int) -> None:
        if size < 0:
            raise ValueError(f"cache size must be >= 0, got {size}")
        self.size = size
        self._data: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> torch.Tensor | None:
        with self._lock:
            value = self._data.get(key)
            if value is not None:
                self._data.move_to_end(key)
            return value

    def put(self, key: str, value: torch.Tensor) -> None:
        if self.size == 0:
            return
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.size:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


def split_sentences(text: str) -> list[str]:
    parts = re.split(r"(?<=[.!?])\s+", text.strip())
    return [p for p in parts if p]


class Recommender:
    """A trained run, ready to answer requests."""

    def __init__(
        self,
        run_dir: Path,
        data_dir: str | None = None,
        checkpoint: str = "final",
        *,
        cache_size: int = 4096,
        preload_encoder: bool = False,
        encoder_precision: str = "float32",
        encoder_threads: int | None = None,
        index: str = "exact",
        candidates: int = 200,
        probe: int | None = None,
        encoder_runtime: str = "torch",
    ):
        """``cache_size``: sentence vectors kept (least recently used dropped), so a service
        that sees endless new texts stays within a fixed memory; ``preload_encoder``: load
        the sentence encoder now rather than on the first request that needs it;
        ``encoder_precision`` (float32, bfloat16 or auto), ``encoder_threads`` and
        ``encoder_runtime`` (torch, onnx or auto): how the sentence encoder runs for new
        texts (see :class:`TextEncoder`; ``ur4rec serve`` uses auto: the export to ONNX costs
        a few seconds at start, then each new text encodes 1.2 to 1.7 times as fast).
        ``index``: ``exact`` scores every item per request; ``ann`` looks up ``candidates``
        items per dot-product branch in a faiss index (``probe`` inverted lists searched) and
        scores their union exactly (serve/index.py)."""
        from ur4rec.runs.load import load_run
        from ur4rec.text.encoder import resolve_precision
        from ur4rec.text.onnx_runtime import resolve_runtime

        self.run_dir = Path(run_dir)
        self.cfg, self.dataset, self.model = load_run(self.run_dir, data_dir, checkpoint, "serve")
        self.model.eval()
        self.kind = self.cfg.model.name
        self.max_len = self.cfg.data.max_len
        self._sentence_cache = LRUCache(cache_size)
        self._encoder: Any = None
        self.encoder_precision = resolve_precision(encoder_precision)
        resolve_runtime(encoder_runtime, self.encoder_precision)  # a bad value fails here
        self.encoder_runtime = encoder_runtime
        self._encoder_threads = encoder_threads
        # Ad-hoc histories get the template the run's user texts came from (files: titled).
        self._template_titles = self.cfg.text.user_texts != "template-aspects"
        self.trained_items = self.dataset.n_items  # the catalogue the run was trained on
        self._added = 0  # items of the run's overlay applied so far
        self._overlay_seen: tuple[int, int] | None = None
        self._overlay: Any = None  # the overlay last read or written, whose signature that is
        self.indexes: dict[str, Any] | None = None  # exact until the indexes are built
        self.sync_items(refresh=False)
        # no_grad, not inference_mode: these tensors outlive the block and may meet autograd.
        with torch.no_grad():
            self.model.prepare_for_inference()
            self._refresh_items()
            self._known_states = self._precompute_known_users()
        self.indexes = self._build_indexes(index, probe)
        self.candidates = candidates
        described = self.model.describe()
        self._prior_weight: float | None = described.get("prior_weight")
        self._cooccurrence_weights: dict[str, float] | None = (
            {k: described[k] for k in COOCCURRENCE_WEIGHTS}
            if all(k in described for k in COOCCURRENCE_WEIGHTS)
            else None
        )
        if preload_encoder and self.model.uses_text:
            self._encode(["warm-up"])  # loads the model and runs it once

    @property
    def encoder_description(self) -> str | None:
        """How new texts are encoded (``onnx`` or ``torch`` and the precision); None for a
        model without text, or before the encoder is first used."""
        if self._encoder is None:
            return None
        if self._encoder.runtime == "onnx":
            return "onnx float32"
        return f"torch {self._encoder.precision}"

    def _build_indexes(self, kind: str, probe: int | None) -> dict[str, Any] | None:
        from ur4rec.serve.index import INDEX_KINDS, ANNIndex

        if kind not in INDEX_KINDS:
            raise Ur4recError(f"index must be one of {', '.join(INDEX_KINDS)}, got {kind!r}")
        if kind == "exact":
            return None
        with torch.no_grad():
            branches = self.model.dot_branches()
        if branches is None:
            raise Ur4recError(
                f"this run's model ({self.kind}) does not score items by dot products of user "
                "and item vectors alone: serve it with --index exact"
            )
        threads = torch.get_num_threads()
        return {name: ANNIndex(m, probe=probe, threads=threads) for name, m in branches.items()}

    @property
    def index_memory_bytes(self) -> int:
        return sum(i.memory_bytes for i in (self.indexes or {}).values())

    def _refresh_items(self) -> None:
        """What serving keeps per item, from the model's cached item vectors (which
        ``add_items`` extends row by row)."""
        with torch.no_grad():
            branches = self.model.dot_branches() if self.indexes else None
            for name, matrix in (branches or {}).items():
                index = self.indexes[name]  # type: ignore[index]
                if len(matrix) > index.size:  # items added since: into the index too
                    index.add(matrix[index.size :])
            self.item_text = self.model.item_text_vectors()  # sentence-encoder space, or None
            # Explanations' "nearest history item" is measured in the model's own item space.
            self.item_space = F.normalize(self.model.item_space(), dim=-1)
        titles = getattr(self, "titles", [])
        self.titles = titles + [display_title(i) for i in self.dataset.item_info[len(titles) :]]

    # -- items added after training (runs/overlay.py) -----------------------------------
    def sync_items(self, refresh: bool = True) -> int:
        """Apply the items in the run's overlay that this process has not applied yet (added
        by ``ur4rec items add`` or another worker); returns how many. Cheap when nothing
        changed: one stat of the overlay file."""
        from ur4rec.runs.overlay import overlay_signature, read_overlay

        signature = overlay_signature(self.run_dir)
        if signature == self._overlay_seen:
            return 0
        overlay = read_overlay(self.run_dir, self.cfg.text.encoder)
        count = self._apply(overlay, refresh)
        self._overlay, self._overlay_seen = overlay, signature
        return count

    def _apply(self, overlay: Any, refresh: bool = True) -> int:
        # The overlay only grows: what this process has not applied is its tail.
        from ur4rec.runs.overlay import apply_items

        fresh = overlay.items[self._added :]
        if fresh:
            apply_items(self.dataset, self.model, fresh, overlay.vectors[self._added :])
            self._added = len(overlay.items)
            if refresh:
                self._refresh_items()
        return len(fresh)

    def add_items(self, items: Sequence[Any]) -> list[str]:
        """Add new items (:class:`ur4rec.runs.overlay.NewItem`) to the catalogue: their texts
        are encoded, persisted in the run's overlay and scored from the next request on.
        Returns their ids. Call it from the thread that scores (the service does)."""
        from ur4rec.runs.overlay import DuplicateItemError, append_items, check_new

        if not self.model.uses_text:
            raise Ur4recError(
                f"this run's model ({self.kind}) reads no item text: it cannot score an item "
                "it was not trained on"
            )
        items = list(items)
        self.sync_items()
        check_new(items, set(self.dataset.item_ids))  # fail before encoding anything
        # The service's encoder (bfloat16 where native: cosine >= 0.9999 to float32, measured
        # in benchmarks/encoder_precision.py); the vectors are kept, so a restart agrees.
        vectors = self._encode([item.text for item in items])
        catalogue = set(self.dataset.item_ids[: self.trained_items])
        try:
            known = (self._overlay, self._overlay_seen) if self._overlay is not None else None
            written = append_items(
                self.run_dir, items, vectors, self.cfg.text.encoder, catalogue, known
            )
        except DuplicateItemError:
            self.sync_items()  # another process added it meanwhile
            raise
        self._overlay, self._overlay_seen = written  # it holds any other process's items too
        self._apply(self._overlay)
        return [item.id for item in items]

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
        return self.recommend_users([raw_user_id], k, explain)[0]

    def recommend_users(
        self, raw_user_ids: Sequence[str], k: int | Sequence[int] = 10, explain: bool = False
    ) -> list[Recommendations]:
        """:meth:`recommend_user` for many users at once: one batched forward pass."""
        ks = [k] * len(raw_user_ids) if isinstance(k, int) else list(k)
        cases = []
        for raw, count in zip(raw_user_ids, ks, strict=True):
            user = self.user_index(raw)
            known_texts = self.model.known_user_texts()
            text = known_texts[user] if known_texts is not None else None
            history = self.dataset.sequence(user).tolist()
            cases.append(_Case(user, history, count, explain, text, None, str(raw)))
        return self._recommend(cases)

    def recommend_history(
        self,
        raw_item_ids: list[str],
        k: int = 10,
        preference_text: str | None = None,
        explain: bool = False,
    ) -> Recommendations:
        """Top-k for a user the model has never seen, from an ad-hoc history (oldest first)."""
        (result,) = self.recommend_histories(
            [HistoryQuery(raw_item_ids, k, preference_text, explain)]
        )
        return result

    def recommend_histories(self, queries: Sequence[HistoryQuery]) -> list[Recommendations]:
        """:meth:`recommend_history` for many at once: their new texts are encoded in one
        call and scored in one forward pass."""
        cases, notes = [], []
        for query in queries:
            if not query.items:
                raise Ur4recError("the history is empty: give at least one item id")
            history = self.item_indices(query.items)
            text, note = query.text, []
            if self.model.uses_text and text is None:
                text = user_text(
                    self._ad_hoc_history(history),
                    titles=self._template_titles,
                    domain=domain_of(self.dataset),
                )
                note.append("no preference text given: written from the history by the template")
            elif not self.model.uses_text:
                text = None
                if query.text is not None:
                    note.append("this run has no text side: the preference text is not used")
            cases.append(_Case(-1, history, query.k, query.explain, text, None, None))
            notes.append(note)
        if self.model.uses_text and cases:
            vectors = self._encode([case.text or "" for case in cases])
            for case, vector in zip(cases, vectors, strict=True):
                case.text_vector = vector
        results = self._recommend(cases) if cases else []
        for result, note in zip(results, notes, strict=True):
            result.notes.extend(note)
        return results

    def _ad_hoc_history(self, items: list[int]) -> UserHistory:
        # No ratings or times are known: every item counts as liked, in the given order.
        seen = tuple(
            SeenItem(self.dataset.item_ids[i], self.dataset.item_info[i], 4.0, t)
            for t, i in enumerate(items)
        )
        return UserHistory("ad-hoc", seen)

    # -- scoring --------------------------------------------------------------------------
    @torch.inference_mode()
    def _recommend(self, cases: list[_Case]) -> list[Recommendations]:
        for case in cases:
            if not 1 <= case.k <= MAX_K:
                raise Ur4recError(f"k must be between 1 and {MAX_K}, got {case.k}")
        if self._known_states is not None and all(
            c.user >= 0 and c.text_vector is None for c in cases
        ):
            rows_of = torch.tensor([case.user for case in cases])
            out = {name: state[rows_of] for name, state in self._known_states.items()}
        else:
            out = self._user_states(cases)
        seen = [sorted(set(case.history)) for case in cases]
        width = min(max(case.k for case in cases), self.dataset.n_items)
        if self.indexes is None:
            scores, branches, router, weight = self._scores(out)
            rows = torch.tensor([row for row, items in enumerate(seen) for _ in items])
            scores = scores.index_put(
                (rows, torch.tensor([i for s in seen for i in s])), torch.tensor(float("-inf"))
            )
            top = scores.topk(width, dim=1)
            top_items, top_values = top.indices, top.values
            top_branches = {b: v.gather(1, top_items) for b, v in branches.items()}
        else:
            top_items, top_values, top_branches, weight = self._ann_top(out, seen, width)
            router = out.get("router")
        results = []
        for row, case in enumerate(cases):
            count = min(case.k, self.dataset.n_items - len(seen[row]))
            count = min(count, int(torch.isfinite(top_values[row]).sum()))
            chosen, values = top_items[row, :count].tolist(), top_values[row, :count].tolist()
            branch_values = {b: v[row, :count].tolist() for b, v in top_branches.items()}
            explanations = (
                self._explain(chosen, case.history, case.text) if case.explain else [None] * count
            )
            recs = [
                Recommendation(
                    rank=rank + 1,
                    item=self.dataset.item_ids[item],
                    title=self.titles[item],
                    score=round(value, 4),
                    scores={b: round(v[rank], 4) for b, v in branch_values.items()},
                    explanation=explanation,
                )
                for rank, (item, value, explanation) in enumerate(
                    zip(chosen, values, explanations, strict=True)
                )
            ]
            results.append(
                Recommendations(
                    user=case.raw_user,
                    model=self.kind,
                    items=recs,
                    history_length=len(case.history),
                    sasrec_weight=None if weight is None else round(float(weight[row, 0]), 4),
                    prior_weight=self._prior_weight,
                    cooccurrence_weights=self._cooccurrence_weights,
                    router=None if router is None else [round(float(w), 4) for w in router[row]],
                    preference_text=case.text,
                )
            )
        return results

    def _ann_top(
        self, states: dict[str, torch.Tensor], seen: list[list[int]], width: int
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        """(items, scores, branch scores), each [B, width], best first, and the fusion weight:
        each branch's nearest items to the user's vector, scored exactly by the model on
        their union (-inf where fewer than ``width`` unseen candidates were found)."""
        assert self.indexes is not None
        queries = self.model.branch_queries(states)
        # Enough candidates that the seen items, excluded afterwards, cannot crowd out k.
        wanted = min(self.dataset.n_items, max(self.candidates, width + max(map(len, seen))))
        found = torch.cat([self.indexes[b].search(queries[b], wanted) for b in self.indexes], 1)
        found, _ = found.sort(dim=1)
        repeat = torch.zeros_like(found, dtype=torch.bool)
        repeat[:, 1:] = found[:, 1:] == found[:, :-1]
        safe = found.clamp(min=0)
        scores = self.model.candidate_scores(states, safe)
        drop = repeat | (found < 0)
        for row, items in enumerate(seen):
            drop[row] |= torch.isin(safe[row], torch.tensor(items, dtype=safe.dtype))
        total = scores["score"].masked_fill(drop, float("-inf"))
        top = total.topk(min(width, total.shape[1]), dim=1)
        items = safe.gather(1, top.indices)
        branches = {
            b: v.gather(1, top.indices) for b, v in scores.items() if b in self.model.branches
        }
        return items, top.values, branches, scores.get("sasrec_weight")

    def _user_states(self, cases: list[_Case]) -> dict[str, torch.Tensor]:
        """What the model makes of each history: user vectors per branch (+ router weights),
        or, when a reranker needs the history itself, the branch scores directly."""
        recent = [case.history[-self.max_len :] for case in cases]
        width = max(len(r) for r in recent)
        items = torch.tensor([[PAD] * (width - len(r)) + r for r in recent], dtype=torch.long)
        users = torch.tensor([case.user for case in cases])
        text = None
        if any(case.text_vector is not None for case in cases):
            text = self.model.preference_vectors(
                users, [c.text for c in cases], [c.text_vector for c in cases]
            )
        return self.model.user_states(HistoryBatch(users, items), user_text=text)

    def _scores(
        self, out: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None, torch.Tensor | None]:
        """(model scores, per-branch scores, router weights, fusion weight) from user states,
        as the model's own scoring computes them."""
        out = self.model.scores_from_states(out)
        branches = {b: out[b] for b in self.model.branches if b in out}
        return out["score"], branches, out.get("router"), out.get("sasrec_weight")

    def _precompute_known_users(self, batch_size: int = 256) -> dict[str, torch.Tensor] | None:
        """Every known user's states, once: their histories do not change while serving, so a
        request for one is the product of its user vectors with the item matrices."""
        if not self.model.states_per_user:
            return None  # scoring reads each history: no shortcut
        states: dict[str, list[torch.Tensor]] = {}
        for start in range(0, self.dataset.n_users, batch_size):
            users = range(start, min(start + batch_size, self.dataset.n_users))
            cases = [
                _Case(u, self.dataset.sequence(u).tolist(), 1, False, None, None, None)
                for u in users
            ]
            for name, value in self._user_states(cases).items():
                states.setdefault(name, []).append(value)
        return {name: torch.cat(parts) for name, parts in states.items()}

    # -- explanations ---------------------------------------------------------------------
    def _encode(self, texts: list[str]) -> torch.Tensor:
        """Sentence-encoder vectors of texts, kept in a bounded LRU cache (in memory only)."""
        found = {
            t: v for t in dict.fromkeys(texts) if (v := self._sentence_cache.get(t)) is not None
        }
        missing = [t for t in dict.fromkeys(texts) if t not in found]
        if missing:
            if self._encoder is None:
                from ur4rec.text.encoder import TextEncoder

                self._encoder = TextEncoder(
                    self.cfg.text.encoder,
                    cache_dir=None,
                    precision=self.encoder_precision,
                    threads=self._encoder_threads,
                    runtime=self.encoder_runtime,
                )
            vectors = torch.from_numpy(self._encoder.encode(missing, remember=False))
            for text, vector in zip(missing, vectors, strict=True):
                found[text] = vector
                self._sentence_cache.put(text, vector)
        return torch.stack([found[t] for t in texts])

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
