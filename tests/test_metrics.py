import math

import pytest
import torch

from ur4rec.eval.metrics import metrics_from_ranks, target_ranks


def test_metrics_hand_computed() -> None:
    # Ranks 0, 2 and 12 (0-based): hits at K=10 for the first two only.
    m = metrics_from_ranks(torch.tensor([0, 2, 12]), ks=(1, 10))
    assert m["hit@1"] == pytest.approx(1 / 3)
    assert m["hit@10"] == pytest.approx(2 / 3)
    assert m["ndcg@10"] == pytest.approx((1.0 + 1 / math.log2(4)) / 3)
    assert m["mrr@10"] == pytest.approx((1.0 + 1 / 3) / 3)
    assert m["ndcg@1"] == pytest.approx(1 / 3) and m["mrr@1"] == pytest.approx(1 / 3)


def test_ties_count_against_the_target() -> None:
    candidates = torch.tensor([[1.0, 1.0, 1.0], [0.0, 2.0, 0.5], [0.1, 0.2, 0.3]])
    target = torch.tensor([1.0, 1.0, 0.9])
    # Row 0: all tied -> last; row 1: one strictly higher; row 2: best.
    assert target_ranks(candidates, target).tolist() == [3, 1, 0]


def test_empty_ranks_raise() -> None:
    with pytest.raises(ValueError, match="empty"):
        metrics_from_ranks(torch.tensor([], dtype=torch.int64))
