import dataclasses

import numpy as np
import pytest
import torch

from ur4rec.data.batches import HistoryBatch
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import PAD, make_split, targets
from ur4rec.errors import NonFiniteScoresError, Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.protocols import draw_negatives
from ur4rec.measures import Protocol, parse_protocol


class FixedScores:
    """Scores from a fixed [n_users, n_items] table."""

    def __init__(self, table: torch.Tensor) -> None:
        self.table = table

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return self.table[batch.users].clone()


def test_full_protocol_masks_history_but_not_target(tiny: Dataset) -> None:
    split = make_split(tiny)
    ev = Evaluator(tiny, split, "test", "full", ks=(1, 2))
    # Score = item index, so the highest ids win unless masked. User 0's test input is items
    # 0..3 and target 4 (the top id among its unmasked items 4, 5): rank 1 behind item 5.
    table = torch.arange(tiny.n_items, dtype=torch.float32).repeat(tiny.n_users, 1)
    ranks = ev.ranks(FixedScores(table))
    seen = {
        int(u): set(tiny.sequence(u)[:n].tolist())
        for u, n in zip(split.test.users, split.test.lengths, strict=True)
    }
    expected = []
    for u, t in zip(split.test.users, targets(tiny, split.test), strict=True):
        rivals = [i for i in range(tiny.n_items) if i not in seen[int(u)] and i != t and i >= t]
        expected.append(len(rivals))
    assert ranks.tolist() == expected
    # A scorer that puts the target first everywhere gets perfect metrics.
    oracle = torch.zeros(tiny.n_users, tiny.n_items)
    oracle[torch.from_numpy(split.test.users), torch.from_numpy(targets(tiny, split.test))] = 1.0
    assert ev.evaluate(FixedScores(oracle))["hit@1"] == 1.0


def test_constant_scores_rank_last(tiny: Dataset) -> None:
    ev = Evaluator(tiny, make_split(tiny), "test", "full")
    ranks = ev.ranks(FixedScores(torch.zeros(tiny.n_users, tiny.n_items)))
    unmasked = tiny.n_items - ev.prefixes.lengths  # candidates = all minus history
    assert ranks.tolist() == (unmasked - 1).tolist()


def test_nan_scores_raise_naming_users(tiny: Dataset) -> None:
    table = torch.zeros(tiny.n_users, tiny.n_items)
    table[1, 3] = float("nan")
    table[2, 0] = float("inf")
    ev = Evaluator(tiny, make_split(tiny), "valid", "full")
    with pytest.raises(NonFiniteScoresError, match=r"2 user\(s\) \(raw ids: 2, 3\)"):
        ev.evaluate(FixedScores(table))


def test_wrong_score_shape(tiny: Dataset) -> None:
    ev = Evaluator(tiny, make_split(tiny), "valid", "full")
    with pytest.raises(ValueError, match="expected"):
        ev.evaluate(FixedScores(torch.zeros(tiny.n_users, 2)))


def test_protocol_parsing() -> None:
    assert parse_protocol("full") == Protocol("full", 0)
    # "seed" is the earlier name of the 1+99 protocol, still accepted.
    assert parse_protocol("seed") == parse_protocol("sampled-with-history:99")
    assert parse_protocol("seed") == Protocol("sampled-with-history", 99)
    assert parse_protocol("seed").name == "sampled-with-history:99"
    assert parse_protocol("popsampled:50").name == "popsampled:50"
    for bad in ("sampled", "sampled:0", "sampled:x", "seed:5", "random", "full:3"):
        with pytest.raises(Ur4recError):
            parse_protocol(bad)


def test_too_few_items_for_negatives(tiny: Dataset) -> None:
    with pytest.raises(Ur4recError, match="only 5 items left to draw 99"):
        Evaluator(tiny, make_split(tiny), "test", "seed")


def _histories(n_users: int, rng: np.random.Generator) -> list[np.ndarray]:
    return [rng.choice(300, size=40, replace=False) for _ in range(n_users)]


def test_negatives_fixed_valid_and_independent_of_batching() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items = 2500, 300  # more users than one random block
    targets_ = rng.integers(0, n_items, n_users)
    histories = _histories(n_users, rng)
    popularity = rng.integers(0, 50, n_items)
    for name in ("seed", "sampled:30", "popsampled:30"):
        proto = parse_protocol(name)
        a = draw_negatives(proto, targets_, histories, n_items, popularity, "test")
        b = draw_negatives(proto, targets_, histories, n_items, popularity, "test")
        assert np.array_equal(a, b)
        c = draw_negatives(proto, targets_, histories, n_items, popularity, "valid")
        assert not np.array_equal(a, c)
        for row, t, h in zip(a, targets_, histories, strict=True):
            assert len(set(row.tolist())) == len(row)  # without replacement
            assert t not in row
            if proto.excludes_history:
                assert not set(row.tolist()) & set(h.tolist())
    # 'seed' does not exclude history: with 40 of 300 items seen, some negatives are seen ones.
    seed = draw_negatives(parse_protocol("seed"), targets_, histories, n_items, popularity, "t")
    overlap = np.mean(
        [len(set(r.tolist()) & set(h.tolist())) for r, h in zip(seed, histories, strict=True)]
    )
    assert 10 < overlap < 16  # expected 99 * 40/299 = 13.2


def test_popsampled_follows_popularity() -> None:
    rng = np.random.default_rng(1)
    n_items = 200
    popularity = np.zeros(n_items, dtype=np.int64)
    popularity[:20] = 1000
    popularity[20:] = 1
    targets_ = np.full(500, 199)
    negs = draw_negatives(
        parse_protocol("popsampled:10"),
        targets_,
        [np.array([], dtype=np.int64)] * 500,
        n_items,
        popularity,
        "t",
    )
    assert np.mean(negs < 20) > 0.9
    uniform = draw_negatives(
        parse_protocol("sampled:10"),
        targets_,
        [np.array([], dtype=np.int64)] * 500,
        n_items,
        popularity,
        "t",
    )
    assert np.mean(uniform < 20) < 0.2
    del rng


def test_evaluation_independent_of_batch_size(tiny: Dataset) -> None:
    split = make_split(tiny)
    table = torch.randn(tiny.n_users, tiny.n_items, generator=torch.Generator().manual_seed(0))
    a = Evaluator(tiny, split, "test", "sampled:1", batch_size=1).evaluate(FixedScores(table))
    b = Evaluator(tiny, split, "test", "sampled:1", batch_size=64).evaluate(FixedScores(table))
    assert a == b


def test_history_batch_is_left_padded(tiny: Dataset) -> None:
    ev = Evaluator(tiny, make_split(tiny), "valid", "full")
    _, batch = next(ev.batches())
    assert batch.items[1].tolist() == [PAD, 0, 1]
    assert batch.lengths.tolist() == [3, 2, 3]


def test_the_renamed_protocol_draws_the_same_candidates() -> None:
    # Its random stream keeps the first name, so every figure measured as 'seed' still holds:
    # these are the first candidates of the 1+99 protocol as drawn under that name.
    rng = np.random.default_rng(0)
    targets_ = rng.integers(0, 300, 50)
    histories = _histories(50, rng)
    drawn = draw_negatives(parse_protocol("sampled-with-history:99"), targets_, histories, 300,
                           None, "test")  # fmt: skip
    key = sum(ord(c) for c in "test" + "seed")
    gumbel = np.random.default_rng([20240607, key, 0]).gumbel(size=(50, 300))
    gumbel[np.arange(50), targets_] = -np.inf
    expected = torch.from_numpy(gumbel).topk(99, dim=1).indices.numpy()
    assert np.array_equal(drawn, expected)
    # Another N of the same kind draws under its own name.
    other = draw_negatives(parse_protocol("sampled-with-history:98"), targets_, histories, 300,
                           None, "test")  # fmt: skip
    assert not np.array_equal(other[:, :98], drawn[:, :98])


@pytest.mark.parametrize(
    "protocol", ["full", "sampled:99", "sampled-with-history:99", "popsampled:99"]
)
def test_blocked_evaluation_equals_the_one_matrix_evaluation_on_ml100k(protocol: str) -> None:
    """Scored a block of items at a time (bounded memory), every model ranks every test target
    exactly where the one-matrix evaluator does."""
    pytest.importorskip("recbole")
    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset
    from ur4rec.runs import build

    dataset = open_dataset("ml-100k")
    split = make_split(dataset)
    whole = Evaluator(dataset, split, "test", protocol)
    assert not whole.blocked(object())  # ML-100K fits one block
    torch.manual_seed(0)
    for name in ("sasrec", "ease", "pop"):
        cfg = load_config(None, [f"model.name={name}", "data.dataset=ml-100k"])
        model = build(cfg, dataset)[0].eval()
        expected = whole.ranks(model)
        for block, batch in ((1, 1024), (97, 300), (1000, 64)):
            parts = Evaluator(dataset, split, "test", protocol, batch_size=batch, item_block=block)
            assert parts.blocked(model)
            assert torch.equal(parts.ranks(model), expected), (name, block)


class BlockedScores(FixedScores):
    """FixedScores scored a block of items at a time, as large catalogues are."""

    def user_states(self, batch: HistoryBatch) -> dict[str, torch.Tensor]:
        return {"users": batch.users}

    def block_scores(self, states: dict[str, torch.Tensor], items: slice) -> torch.Tensor:
        return self.table[states["users"]][:, items].clone()


@pytest.mark.parametrize("blocked", [False, True])
def test_seen_items_last_ranks_the_users_own_items_below_the_target(
    tiny: Dataset, blocked: bool
) -> None:
    """Under sampled-with-history with every other item a candidate, ranking the user's own
    items last is exactly full ranking (which leaves history out); scored, they are rivals."""
    split = make_split(tiny)
    protocol = f"sampled-with-history:{tiny.n_items - 1}"
    table = torch.arange(tiny.n_items, dtype=torch.float32).repeat(tiny.n_users, 1)
    kind = BlockedScores if blocked else FixedScores
    block = {"item_block": 2} if blocked else {}
    ev = Evaluator(tiny, split, "test", protocol, **block)
    full = Evaluator(tiny, split, "test", "full").ranks(FixedScores(table))
    scored = ev.ranks(kind(table))
    last = kind(table)
    last.seen_items_last = True
    assert ev.blocked(last) == blocked
    assert torch.equal(ev.ranks(last), full)
    # Scored, every history item above the target is one more rival.
    history = [set(tiny.sequence(u)[:n].tolist()) for u, n in zip(ev.prefixes.users,
               ev.prefixes.lengths, strict=True)]  # fmt: skip
    above = [sum(i > t for i in h) for h, t in zip(history, ev.targets, strict=True)]
    assert (scored - full).tolist() == above
    assert any(above)
    assert ev.evaluate(last)["seen_items"] == "last"
    assert ev.evaluate(kind(table))["seen_items"] == "scored"
    # Protocols whose candidates never hold history say nothing about it.
    assert "seen_items" not in Evaluator(tiny, split, "test", "full").evaluate(last)
    assert "seen_items" not in Evaluator(tiny, split, "test", "sampled:1").evaluate(last)


def test_seen_items_follow_the_config_and_the_data(tiny: Dataset) -> None:
    from ur4rec.config import load_config
    from ur4rec.models import ranks_seen_items_last
    from ur4rec.runs import build

    split = make_split(tiny)
    assert ranks_seen_items_last("auto", tiny, split.train)  # no item twice in a history
    assert ranks_seen_items_last("last", tiny, split.train)
    assert not ranks_seen_items_last("keep", tiny, split.train)
    with pytest.raises(Ur4recError, match="model.seen_items must be auto, last or keep"):
        ranks_seen_items_last("sometimes", tiny, split.train)
    # A log where a user consumes an item again: auto keeps the user's items as candidates.
    item = tiny.item.copy()
    item[tiny.offsets[0] + 1] = item[tiny.offsets[0]]  # user 0's first item, again
    again = dataclasses.replace(tiny, item=item)
    assert not ranks_seen_items_last("auto", again, make_split(again).train)
    for mode, expected in (("auto", True), ("keep", False)):
        cfg = load_config(None, ["model.name=pop", f"model.seen_items={mode}"])
        assert build(cfg, tiny)[0].seen_items_last is expected


@pytest.mark.parametrize("blocked", [False, True])
def test_a_model_on_another_device_ranks_as_on_the_cpu(tiny: Dataset, blocked: bool) -> None:
    """The wrapper the evaluator puts around a model on a GPU (batches there, float32 scores
    back) changes no rank; here it wraps a CPU model, the one device this machine has."""
    from ur4rec.eval.evaluator import _OnDevice, on_its_device

    table = torch.randn(tiny.n_users, tiny.n_items, generator=torch.Generator().manual_seed(0))
    kind = BlockedScores if blocked else FixedScores
    ev = Evaluator(tiny, make_split(tiny), "test", "full", **({"item_block": 2} if blocked else {}))
    wrapped = _OnDevice(kind(table), torch.device("cpu"))
    assert ev.blocked(wrapped) == blocked
    assert torch.equal(ev.ranks(wrapped), ev.ranks(kind(table)))
    with pytest.raises(AttributeError):
        wrapped.no_such_attribute  # noqa: B018
    # Only a module with weights off the CPU is wrapped.
    plain = kind(table)
    assert on_its_device(plain) is plain
    cpu_module = torch.nn.Linear(2, 2)
    assert on_its_device(cpu_module) is cpu_module
    meta = on_its_device(torch.nn.Linear(2, 2, device="meta"))
    assert isinstance(meta, _OnDevice) and meta.device.type == "meta"
