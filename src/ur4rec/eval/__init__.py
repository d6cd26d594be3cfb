"""Evaluation protocols, metrics and baselines."""

from ur4rec.eval.baselines import EASE, Popularity
from ur4rec.eval.evaluator import Evaluator, HistoryBatch, Scorer
from ur4rec.eval.metrics import metrics_from_ranks
from ur4rec.eval.protocols import Protocol, parse_protocol

__all__ = [
    "EASE",
    "Evaluator",
    "HistoryBatch",
    "Popularity",
    "Protocol",
    "Scorer",
    "metrics_from_ranks",
    "parse_protocol",
]
