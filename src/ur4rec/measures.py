"""What results are measured with: metric names, cut-offs, and the names of evaluation
protocols. Configs name these and eval/ computes them, so they sit below both."""

from __future__ import annotations

from dataclasses import dataclass

from ur4rec.errors import Ur4recError

DEFAULT_KS = (5, 10, 20)
METRICS = ("hit", "ndcg", "mrr")
SEED_NEGATIVES = 99


@dataclass(frozen=True)
class Protocol:
    kind: str  # full | seed | sampled | popsampled
    negatives: int = 0

    @property
    def name(self) -> str:
        return self.kind if self.kind in ("full", "seed") else f"{self.kind}:{self.negatives}"

    @property
    def excludes_history(self) -> bool:
        return self.kind != "seed"


def parse_protocol(text: str) -> Protocol:
    """'full', 'seed', 'sampled:N' or 'popsampled:N'."""
    kind, _, count = text.strip().partition(":")
    if kind in ("full", "seed") and not count:
        return Protocol(kind, SEED_NEGATIVES if kind == "seed" else 0)
    if kind in ("sampled", "popsampled"):
        if not count.isdigit() or int(count) < 1:
            raise Ur4recError(f"protocol {text!r}: N in {kind}:N must be a positive integer")
        return Protocol(kind, int(count))
    raise Ur4recError(f"unknown protocol {text!r}; use full, seed, sampled:N or popsampled:N")


def metric_ok(name: str) -> bool:
    """'ndcg@10' and the like: a known metric at a computed cut-off."""
    kind, _, k = name.partition("@")
    return kind in METRICS and k.isdigit() and int(k) in DEFAULT_KS


def protocol_ok(text: str) -> bool:
    try:
        parse_protocol(text)
    except Ur4recError:
        return False
    return True
