import math

import pytest
import torch

from ur4rec.config import LossConfig, ModelConfig
from ur4rec.data.dataset import Dataset
from ur4rec.models import losses
from ur4rec.models.sasrec import NegativeSampler, SASRec


def test_full_softmax_ce_by_hand() -> None:
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    value = losses.full_softmax_ce(logits, torch.tensor([2, 0]))
    first = -math.log(math.exp(3) / (math.exp(1) + math.exp(2) + math.exp(3)))
    assert value.item() == pytest.approx((first + math.log(3)) / 2, rel=1e-6)


@pytest.mark.parametrize("budget", [1, 7, 40, 1 << 20])
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("keep", [0, 1 << 25])  # recomputed in backward, or kept from forward
def test_blocked_softmax_ce_equals_the_materialised_one(
    budget: int, masked: bool, keep: int
) -> None:
    gen = torch.Generator().manual_seed(3)
    hidden = torch.randn(13, 8, generator=gen, requires_grad=True)
    vectors = torch.randn(9, 8, generator=gen, requires_grad=True)
    known = torch.ones(9, dtype=torch.bool)
    if masked:
        known[[2, 5]] = False
    targets = torch.tensor([0, 1, 3, 4, 6, 7, 8, 0, 1, 3, 4, 6, 7])
    expected = losses.full_softmax_ce(hidden @ vectors.T, targets, known)
    want = torch.autograd.grad(expected, [hidden, vectors])
    value = losses.softmax_ce(hidden, vectors, targets, known, budget=budget, keep=keep)
    got = torch.autograd.grad(value, [hidden, vectors])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(got, want, strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # an upstream factor scales the gradients
    doubled = torch.autograd.grad(
        2 * losses.softmax_ce(hidden, vectors, targets, known, keep=keep), [hidden]
    )
    assert torch.allclose(doubled[0], 2 * want[0], atol=1e-6)


def test_bce_by_hand_and_colliding_negatives_ignored() -> None:
    pos = torch.tensor([0.0, 2.0])
    neg = torch.tensor([[0.0, 5.0], [-1.0, 1.0]])
    valid = torch.tensor([[True, False], [True, True]])
    value = losses.bce_with_negatives(pos, neg, valid)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    expected = ((sp(0) + sp(0)) + (sp(-2) + sp(-1) + sp(1))) / 2
    assert value.item() == pytest.approx(expected, rel=1e-6)


def test_sampled_softmax_by_hand_with_log_q() -> None:
    pos = torch.tensor([1.0])
    neg = torch.tensor([[0.0, 5.0]])
    valid = torch.tensor([[True, False]])
    value = losses.sampled_softmax(pos, neg, valid)
    assert value.item() == pytest.approx(-math.log(math.e / (math.e + 1)), rel=1e-6)
    corrected = losses.sampled_softmax(
        pos, neg, valid, torch.tensor([math.log(2.0)]), torch.tensor([[0.0, 0.0]])
    )
    assert corrected.item() == pytest.approx(
        -math.log(math.exp(1 - math.log(2)) / (math.exp(1 - math.log(2)) + 1)), rel=1e-6
    )


def test_sampler_follows_popularity() -> None:
    g = torch.Generator().manual_seed(0)
    sampler = NegativeSampler(4, torch.tensor([0, 0, 1, 3]))
    draws = sampler.sample((4000,), g)
    share = (draws == 3).float().mean().item()
    assert 0.7 < share < 0.8 and not bool((draws < 2).any())
    uniform = NegativeSampler(4).sample((2, 3), g)
    assert uniform.shape == (2, 3)


def test_mixed_sampled_softmax_by_hand() -> None:
    from ur4rec.models.sequential import mixed_sampled_softmax

    hidden = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    vectors = torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0], [0.0, 0.0]])
    counts = torch.tensor([2.0, 1.0, 1.0, 0.0])  # item 3 never occurs in training
    sampler = NegativeSampler(4, known=counts > 0, counts=counts)
    target = torch.tensor([1, 0, 1])
    negatives = torch.tensor([2, 1])  # K = 2 uniform draws over the 3 known items
    g = torch.Generator().manual_seed(5)
    value = mixed_sampled_softmax(hidden, vectors, target, negatives, sampler, g)
    # the same K = 2 positions' targets the function draws, then the uniform draws
    drawn = target[torch.randint(3, (2,), generator=torch.Generator().manual_seed(5))]
    pool = [*drawn.tolist(), 2, 1]
    share = {0: 0.5, 1: 0.25, 2: 0.25}
    log_q = {i: math.log(2 * share[i] + 2 / 3) for i in share}
    total = 0.0
    for row in range(3):
        t = int(target[row])
        logit = lambda i, r=row: float(hidden[r] @ vectors[i]) - log_q[i]  # noqa: E731
        rivals = [logit(i) for i in pool if i != t]
        total += math.log(math.exp(logit(t)) + sum(math.exp(x) for x in rivals)) - logit(t)
    assert value.item() == pytest.approx(total / 3, rel=1e-5)


@pytest.mark.parametrize("kind", ["ce", "bce", "sampled_softmax", "in_batch"])
def test_each_loss_trains_sasrec(kind: str) -> None:
    torch.manual_seed(0)
    model = SASRec(6, 4, ModelConfig(hidden=8, heads=2, inner=16, dropout=0.0, attn_dropout=0.0))
    inputs = torch.tensor([[0, 1, 2, 3], [-1, 2, 3, 4]])
    targets = torch.tensor([[1, 2, 3, 4], [-1, 3, 4, 5]])
    cfg = LossConfig(kind="sampled_softmax", negatives=3, in_batch=True)
    if kind != "in_batch":
        cfg = LossConfig(kind=kind, negatives=3)
    sampler = NegativeSampler(6)
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    g = torch.Generator().manual_seed(0)
    first = model.next_item_loss(inputs, targets, cfg, sampler, g)
    for _ in range(30):
        loss = model.next_item_loss(inputs, targets, cfg, sampler, g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert torch.isfinite(loss) and loss.item() < first.item()


def test_blocked_softmax_ce_keeps_an_exact_loss_when_the_target_underflows() -> None:
    """A target 200 below the best logit has probability 0 in float32; its loss is still
    the exact log-partition minus its logit."""
    hidden = torch.tensor([[1.0], [1.0]], requires_grad=True)
    vectors = torch.tensor([[100.0], [-100.0], [0.0]], requires_grad=True)
    targets = torch.tensor([1, 0])
    value = losses.softmax_ce(hidden, vectors, targets)
    expected = losses.full_softmax_ce(hidden @ vectors.T, targets)
    assert math.isfinite(value.item())
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert value.item() == pytest.approx(200.0 / 2, rel=1e-4)


@pytest.mark.parametrize("keep", [0, 1 << 25])
@pytest.mark.parametrize("how", ["argument", "autocast"])
def test_bfloat16_softmax_ce_is_close_to_float32(keep: int, how: str) -> None:
    """bfloat16 products (asked for, or taken from a bfloat16 autocast) keep the loss and
    both gradients within bfloat16's rounding of the float32 ones; float32 tensors come back."""
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(300, 32, generator=gen, requires_grad=True)
    vectors = (0.3 * torch.randn(50, 32, generator=gen)).requires_grad_()
    targets = torch.randint(0, 50, (300,), generator=gen)
    known = torch.ones(50, dtype=torch.bool)
    known[[3, 7]] = False
    targets[targets == 3], targets[targets == 7] = 4, 8
    want = losses.softmax_ce(hidden, vectors, targets, known, budget=500, keep=keep)
    want_grads = torch.autograd.grad(want, [hidden, vectors])
    if how == "argument":
        value = losses.softmax_ce(
            hidden, vectors, targets, known, budget=500, keep=keep, precision="bfloat16"
        )
    else:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            value = losses.softmax_ce(hidden, vectors, targets, known, budget=500, keep=keep)
    grads = torch.autograd.grad(value, [hidden, vectors])
    assert value.dtype == torch.float32
    assert value.item() == pytest.approx(want.item(), rel=1e-2)
    assert value.item() != want.item()  # the products really were bfloat16
    for got, ref in zip(grads, want_grads, strict=True):
        assert got.dtype == torch.float32
        assert ((got - ref).norm() / ref.norm()).item() < 0.02
    with pytest.raises(ValueError, match="float32 or bfloat16"):
        losses.softmax_ce(hidden, vectors, targets, precision="float16")


def test_popularity_bias_by_hand() -> None:
    bias = losses.popularity_bias(torch.tensor([2, 0, 6]), 0.5)
    assert bias is not None
    want = [0.5 * math.log(0.25), 0.0, 0.5 * math.log(0.75)]
    assert bias.tolist() == pytest.approx(want, rel=1e-6)
    assert losses.popularity_bias(torch.tensor([2, 0, 6]), 0.0) is None


@pytest.mark.parametrize("keep", [0, 1 << 25])
def test_logit_adjusted_softmax_ce_equals_the_materialised_one(keep: int) -> None:
    gen = torch.Generator().manual_seed(5)
    hidden = torch.randn(7, 4, generator=gen, requires_grad=True)
    vectors = torch.randn(6, 4, generator=gen, requires_grad=True)
    known = torch.tensor([True, True, False, True, True, True])
    bias = losses.popularity_bias(torch.tensor([5, 1, 0, 9, 2, 30]), 1.0)
    targets = torch.tensor([0, 1, 3, 4, 5, 0, 3])
    expected = losses.full_softmax_ce(hidden @ vectors.T, targets, known, bias)
    by_hand = torch.nn.functional.cross_entropy(
        (hidden @ vectors.T + bias).masked_fill(~known, float("-inf")), targets
    )
    assert expected.item() == pytest.approx(by_hand.item(), rel=1e-6)
    # the adjustment changes the loss: popular targets are cheaper, rare ones dearer
    assert expected.item() != pytest.approx(
        losses.full_softmax_ce(hidden @ vectors.T, targets, known).item(), rel=1e-3
    )
    want = torch.autograd.grad(expected, [hidden, vectors])
    value = losses.softmax_ce(hidden, vectors, targets, known, keep=keep, budget=12, bias=bias)
    got = torch.autograd.grad(value, [hidden, vectors])
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape and torch.allclose(a, b, atol=1e-6)


def test_logit_adjusted_sasrec_trains_with_its_bias(tiny: Dataset) -> None:
    from ur4rec.config import load_config
    from ur4rec.data.splits import interaction_counts, make_split
    from ur4rec.models import ModelInputs, build_model

    cfg = load_config(None, ["model.hidden=8", "model.heads=2", "loss.logit_adjust=0.5"])
    split = make_split(tiny, cfg.data.scheme)
    model = build_model(ModelInputs(cfg, tiny, split.train))
    counts = torch.from_numpy(interaction_counts(tiny, split.train))
    assert torch.equal(model.train_bias, losses.popularity_bias(counts, 0.5))
    assert "train_bias" not in model.state_dict()  # training only, never saved or scored
    plain = build_model(
        ModelInputs(load_config(None, ["model.hidden=8", "model.heads=2"]), tiny, split.train)
    )
    assert plain.train_bias is None
