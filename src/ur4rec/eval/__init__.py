"""Evaluation protocols, metrics and baselines."""

from ur4rec.eval.evaluator import Evaluator, Scorer
from ur4rec.eval.groups import GROUPS, GroupSpec, group_metrics, user_groups
from ur4rec.eval.metrics import metrics_from_ranks
from ur4rec.measures import Protocol, parse_protocol

__all__ = [
    "GROUPS",
    "Evaluator",
    "GroupSpec",
    "Protocol",
    "Scorer",
    "group_metrics",
    "metrics_from_ranks",
    "parse_protocol",
    "user_groups",
]
