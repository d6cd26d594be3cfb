import numpy as np
import torch

from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.evaluator import Evaluator


def test_popularity_scores_are_training_counts(tiny: Dataset) -> None:
    split = make_split(tiny)
    ev = Evaluator(tiny, split, "test", "full")
    _, batch = next(ev.batches())
    scores = build_baseline("pop", tiny, split).score(batch)
    # Training parts: u1 [10,11,12], u2 [10,11], u3 [10,13,14], u4 [12,10].
    expected = {"10": 4, "11": 2, "12": 2, "13": 1, "14": 1, "15": 0}
    assert scores[0].tolist() == [expected[i] for i in tiny.item_ids]


def test_ease_matches_numpy_closed_form(tiny: Dataset) -> None:
    split = make_split(tiny)
    l2 = 0.7
    x = np.zeros((tiny.n_users, tiny.n_items))
    for u, n in enumerate(split.train.lengths):
        x[u, tiny.sequence(u)[:n]] = 1.0
    p = np.linalg.inv(x.T @ x + l2 * np.eye(tiny.n_items))
    b = np.eye(tiny.n_items) - p / np.diag(p)
    np.fill_diagonal(b, 0.0)
    model = build_baseline("ease", tiny, split, l2=l2)
    ev = Evaluator(tiny, split, "test", "full")
    _, batch = next(ev.batches())
    history = np.zeros((len(batch.users), tiny.n_items))
    for row, u in enumerate(batch.users.tolist()):
        history[row, tiny.sequence(u)[: ev.prefixes.lengths[row]]] = 1.0
    expected = torch.from_numpy(history @ b).float()
    torch.testing.assert_close(model.score(batch), expected, atol=1e-5, rtol=1e-5)


def test_recent_ease_reads_only_the_last_items(tiny: Dataset) -> None:
    from ur4rec.data.batches import HistoryBatch
    from ur4rec.data.splits import PAD
    from ur4rec.eval.baselines import build_baseline

    split = make_split(tiny)
    full = build_baseline("ease", tiny, split, l2=1.0)
    recent = build_baseline("ease", tiny, split, l2=1.0, recent=2)
    long = HistoryBatch(torch.tensor([0]), torch.tensor([[0, 1, 2, 3]]))
    last_two = HistoryBatch(torch.tensor([0]), torch.tensor([[PAD, PAD, 2, 3]]))
    torch.testing.assert_close(recent.score(long), full.score(last_two))
    assert not torch.allclose(recent.score(long), full.score(long))
    assert build_baseline("ease-recent", tiny, split).recent == 3
    assert build_baseline("ease", tiny, split).recent == 0
