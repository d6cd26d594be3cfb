"""The evaluator: ranks each user's target under a protocol, in batches, for any scorer.

A scorer is anything with ``score(batch: HistoryBatch) -> Tensor[B, n_items]``. Scores must be
finite: a NaN or an infinity is an error naming the users, never a hit or a miss.

On a large catalogue a model (``user_states`` and ``block_scores``) is scored a block of items
at a time, so memory is bounded by [users per batch x items per block]. The target's rank is
still exact: its score comes from the block that holds it, and each block adds the number of
rivals scoring at least as much (ties count against the target, as everywhere).

Full ranking leaves each user's history out of the rivals. Under ``sampled-with-history:N``
(the report's 1+99 protocol) the candidates may include the user's own items; a scorer whose
``seen_items_last`` is true has those ranked below the target, the same rule (``model.seen_items``
sets it; a scorer without the attribute is ranked on its scores alone).

A model on a GPU (training with ``train.device=cuda`` validates each epoch) gets its batches
there and hands its scores back to the CPU, where ranking happens.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from typing import Protocol as TypingProtocol

import numpy as np
import torch

from ur4rec.data.batches import HistoryBatch
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, Split, interaction_counts, padded_prefixes, targets
from ur4rec.errors import NonFiniteScoresError
from ur4rec.eval.groups import GroupSpec, group_metrics, user_groups
from ur4rec.eval.metrics import DEFAULT_KS, metrics_from_ranks, target_ranks
from ur4rec.eval.protocols import draw_negatives
from ur4rec.measures import Protocol, parse_protocol
from ur4rec.models.cache import frozen_item_vectors

# Scores held at once when a catalogue is scored in blocks: [users per batch x items per block].
SCORE_BUDGET = 1 << 25


class Scorer(TypingProtocol):
    def score(self, batch: HistoryBatch) -> torch.Tensor:
        """Scores [B, n_items] for every item, higher is better."""
        ...


class Evaluator:
    """Evaluates scorers on one part ('valid' or 'test') of a split under one protocol.

    Targets and candidate sets are fixed at construction, so every model, every epoch and
    every batch size is measured on exactly the same cases.
    """

    def __init__(
        self,
        dataset: Dataset,
        split: Split,
        part: str,
        protocol: str | Protocol = "full",
        ks: tuple[int, ...] = DEFAULT_KS,
        batch_size: int = 1024,
        groups: GroupSpec | None = None,
        item_block: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.split = split
        self.part = part
        self.protocol = parse_protocol(protocol) if isinstance(protocol, str) else protocol
        self.ks = tuple(ks)
        self.batch_size = batch_size
        # Items scored at once (None: all of them when [batch x items] fits SCORE_BUDGET).
        if item_block is not None and item_block < 1:
            raise ValueError(f"item_block must be >= 1, got {item_block}")
        self.item_block = item_block or max(1, SCORE_BUDGET // max(1, batch_size))
        self.prefixes = split.part(part)
        self.targets = targets(dataset, self.prefixes)
        self.group_spec = groups or GroupSpec()
        train_counts = interaction_counts(dataset, split.train)
        self.groups = user_groups(
            train_counts, self.targets, self.prefixes.lengths, self.group_spec
        )
        self.negatives: np.ndarray | None = None
        # [users, N] bool: which negatives the user's input history holds (None when the
        # protocol draws no such negatives).
        self.seen: np.ndarray | None = None
        if self.protocol.kind != "full":
            histories = [
                dataset.sequence(u)[:n]
                for u, n in zip(self.prefixes.users, self.prefixes.lengths, strict=True)
            ]
            popularity = train_counts
            self.negatives = draw_negatives(
                self.protocol, self.targets, histories, dataset.n_items, popularity, part
            )
            if not self.protocol.excludes_history:
                seen = [np.isin(row, h) for row, h in zip(self.negatives, histories, strict=True)]
                self.seen = np.array(seen, dtype=bool).reshape(self.negatives.shape)

    def __len__(self) -> int:
        return len(self.prefixes)

    def batches(self, shard: tuple[int, int] = (0, 1)) -> Iterator[tuple[slice, HistoryBatch]]:
        """The users in batches; ``shard`` = (rank, size): every size-th batch from rank."""
        rank, size = shard
        for i, start in enumerate(range(0, len(self), self.batch_size)):
            if i % size != rank:
                continue
            rows = slice(start, min(start + self.batch_size, len(self)))
            users = self.prefixes.users[rows]
            items = padded_prefixes(self.dataset, users, self.prefixes.lengths[rows])
            yield rows, HistoryBatch(torch.from_numpy(users), items)

    def blocked(self, scorer: Scorer) -> bool:
        """Whether ``scorer`` is scored a block of items at a time."""
        return (
            self.item_block < self.dataset.n_items
            and hasattr(scorer, "user_states")
            and hasattr(scorer, "block_scores")
        )

    @torch.inference_mode()
    def ranks(self, scorer: Scorer, sharded: bool = False) -> torch.Tensor:
        """0-based rank of every user's target (ties count against it). ``sharded``: in a
        torch.distributed process group, each process scores every size-th batch of users
        and the ranks are summed across processes, so each ends with all of them."""
        rank, size = _process_group() if sharded else (0, 1)
        model, scorer = scorer, on_its_device(scorer)
        out = torch.zeros(len(self), dtype=torch.int64)
        batches = self.batches((rank, size))
        seen = self.seen if getattr(scorer, "seen_items_last", False) else None
        if self.blocked(scorer):
            with frozen_item_vectors(model):
                for rows, batch in batches:
                    out[rows] = self._blocked_ranks(scorer, rows, batch, seen)
        else:
            self._ranks(scorer, batches, out, seen)
        if size > 1:
            import torch.distributed as dist

            dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def _ranks(
        self, scorer: Scorer, batches: Iterator, out: torch.Tensor, seen: np.ndarray | None
    ) -> None:
        for rows, batch in batches:
            scores = scorer.score(batch)
            self._check(scores, batch)
            target = torch.from_numpy(self.targets[rows])
            arange = torch.arange(len(target))
            target_scores = scores[arange, target]
            if self.negatives is None:
                scores = scores.clone()
                row, col = torch.nonzero(batch.items != PAD, as_tuple=True)
                scores[row, batch.items[row, col]] = -torch.inf
                scores[arange, target] = -torch.inf  # the target is not its own rival
                out[rows] = target_ranks(scores, target_scores)
            else:
                negatives = torch.from_numpy(self.negatives[rows])
                rivals = scores.gather(1, negatives)
                if seen is not None:
                    rivals = rivals.masked_fill(torch.from_numpy(seen[rows]), -torch.inf)
                out[rows] = target_ranks(rivals, target_scores)

    def _blocked_ranks(
        self, scorer: Any, rows: slice, batch: HistoryBatch, seen: np.ndarray | None
    ) -> torch.Tensor:
        states = scorer.user_states(batch)
        target = torch.from_numpy(self.targets[rows])
        n, n_items, width = len(target), self.dataset.n_items, self.item_block
        blocks = [slice(a, min(a + width, n_items)) for a in range(0, n_items, width)]
        target_scores = torch.empty(n)
        for items in blocks:  # each target's score, from the block that holds it
            held = ((target >= items.start) & (target < items.stop)).nonzero()[:, 0]
            if len(held):
                scores = scorer.block_scores(_rows_of(states, held, n), items)
                target_scores[held] = scores[torch.arange(len(held)), target[held] - items.start]
        negatives = None if self.negatives is None else torch.from_numpy(self.negatives[rows])
        rival = None if negatives is None else torch.ones(negatives.shape, dtype=torch.bool)
        if seen is not None:
            rival = ~torch.from_numpy(seen[rows])
        ranks = torch.zeros(n, dtype=torch.int64)
        row, col = torch.nonzero(batch.items != PAD, as_tuple=True)
        history = batch.items[row, col]
        arange = torch.arange(n)
        for items in blocks:
            scores = scorer.block_scores(states, items)
            self._check(scores, batch, items.stop - items.start)
            if negatives is None:
                scores = scores.clone()
                inside = (history >= items.start) & (history < items.stop)
                scores[row[inside], history[inside] - items.start] = -torch.inf
                mine = (target >= items.start) & (target < items.stop)
                scores[arange[mine], target[mine] - items.start] = -torch.inf
                ranks += target_ranks(scores, target_scores)
            else:
                inside = (negatives >= items.start) & (negatives < items.stop)
                picked = scores.gather(1, (negatives - items.start).clamp(0, scores.shape[1] - 1))
                ranks += ((picked >= target_scores[:, None]) & inside & rival).sum(dim=1)
        return ranks

    def evaluate(self, scorer: Scorer, sharded: bool = False) -> dict[str, object]:
        """Metrics plus what they were measured on, in the JSON shape the CLI prints; under
        ``groups`` the same metrics per user group (eval/groups.py)."""
        result = self.result(self.ranks(scorer, sharded))
        if self.seen is not None:
            last = bool(getattr(scorer, "seen_items_last", False))
            result["seen_items"] = "last" if last else "scored"
        return result

    def result(self, ranks: torch.Tensor | np.ndarray) -> dict[str, object]:
        """``evaluate``'s answer for already computed ranks (e.g. stored ones)."""
        ranks = torch.as_tensor(np.asarray(ranks))
        return {
            "dataset": self.dataset.name,
            "protocol": self.protocol.name,
            "split": self.part,
            "scheme": self.split.scheme,
            "users": len(self),
            **metrics_from_ranks(ranks, self.ks),
            "groups": group_metrics(ranks, self.groups, self.ks),
            "group_rules": self.group_spec.describe(),
            "group_legend": self.group_spec.legend(),
        }

    def _check(self, scores: torch.Tensor, batch: HistoryBatch, width: int | None = None) -> None:
        expected = (len(batch.users), self.dataset.n_items if width is None else width)
        if tuple(scores.shape) != expected:
            raise ValueError(f"scorer returned shape {tuple(scores.shape)}, expected {expected}")
        finite = torch.isfinite(scores).all(dim=1)
        if not bool(finite.all()):
            bad = batch.users[~finite].tolist()
            raw = [self.dataset.user_ids[u] for u in bad]
            shown = ", ".join(raw[:10]) + (", ..." if len(raw) > 10 else "")
            raise NonFiniteScoresError(
                f"the model produced NaN or infinite scores for {len(raw)} user(s) "
                f"(raw ids: {shown}); a non-finite score is never counted"
            )


class _OnDevice:
    """A scorer whose model lives on another device than the CPU: batches go there, scores
    come back as float32 CPU tensors; every other attribute is the model's."""

    def __init__(self, scorer: Any, device: torch.device) -> None:
        self.scorer, self.device = scorer, device

    def __getattr__(self, name: str) -> Any:
        inner = getattr(self.scorer, name)  # AttributeError when the model has none
        return getattr(self, "_" + name) if name in ("user_states", "block_scores") else inner

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        moved = HistoryBatch(batch.users.to(self.device), batch.items.to(self.device))
        return self.scorer.score(moved).float().cpu()

    def _user_states(self, batch: HistoryBatch) -> Any:
        moved = HistoryBatch(batch.users.to(self.device), batch.items.to(self.device))
        return self.scorer.user_states(moved)

    def _block_scores(self, states: Any, items: slice) -> torch.Tensor:
        return self.scorer.block_scores(states, items).float().cpu()  # states: on the device


def on_its_device(scorer: Any) -> Any:
    """``scorer`` itself when it is not a module or lives on the CPU; else wrapped so that the
    evaluator's CPU batches and ranking work with it."""
    if not isinstance(scorer, torch.nn.Module):
        return scorer
    first = next(iter(scorer.parameters()), None)
    if first is None:
        first = next(iter(scorer.buffers()), None)
    if first is None or first.device.type == "cpu":
        return scorer
    return _OnDevice(scorer, first.device)


def _rows_of(states: dict[str, torch.Tensor], rows: torch.Tensor, n: int) -> dict[str, Any]:
    """The states of some users of a batch of ``n`` (tensors with a row per user)."""
    return {
        k: v[rows] if isinstance(v, torch.Tensor) and v.dim() and len(v) == n else v
        for k, v in states.items()
    }


def _process_group() -> tuple[int, int]:
    """(rank, size) of the torch.distributed process group; (0, 1) outside one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
