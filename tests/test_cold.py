"""New items and user groups: the cold splits, models that never saw an item, group metrics."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import ConfigError, FusionConfig, ModelConfig, RunConfig, load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.dataset import Dataset, DatasetSpec, preprocess
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.raw import read_ml100k
from ur4rec.data.splits import (
    PAD,
    cold_item_sets,
    interaction_counts,
    make_split,
    parse_scheme,
    prefix_mask,
    targets,
)
from ur4rec.data.windows import TrainWindows
from ur4rec.errors import Ur4recError
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.groups import GroupSpec, group_metrics, user_groups
from ur4rec.models import ModelInputs
from ur4rec.models.content import ContentSASRec
from ur4rec.models.fusion import Fusion, standardise
from ur4rec.models.sasrec import SASRec
from ur4rec.models.text_knn import TextKNN
from ur4rec.text.features import TextFeatures

from .conftest import write_ml100k


def skewed_ratings(n_users: int = 60, n_items: int = 50, length: int = 14) -> list[tuple]:
    """Users walk items in a cycle; low item ids are visited far more often (a popularity
    skew, so quintiles differ)."""
    rng = np.random.default_rng(0)
    rows = []
    for user in range(1, n_users + 1):
        start = int(rng.integers(0, n_items) ** 2 // n_items)
        for step in range(length):
            rows.append((user, (start + step) % n_items + 1, 4, 1000 * step + user))
    return rows


@pytest.fixture
def skewed(tmp_path: Path) -> Dataset:
    titles = {i: (f"Movie {i} (19{50 + i})", "Drama") for i in range(1, 51)}
    folder = write_ml100k(tmp_path / "skewed", ratings=skewed_ratings(), titles=titles)
    return preprocess(read_ml100k(folder), DatasetSpec("skewed", "ml-100k"))


def test_cold_items_never_reach_training(skewed: Dataset) -> None:
    split = make_split(skewed, "cold-items")
    test_new, valid_new = cold_item_sets(skewed)
    new = test_new | valid_new
    assert test_new.sum() == 10 and valid_new.sum() == 5 and not (test_new & valid_new).any()
    # Not one training interaction, window or count holds a new item.
    assert not new[skewed.item[prefix_mask(skewed, split.train)]].any()
    windows = TrainWindows(skewed, split.train, max_len=6).windows
    assert not new[windows[windows != PAD]].any()
    assert (interaction_counts(skewed, split.train)[new] == 0).all()
    # Test cases are leave-one-out's; validation never measures a test-only new item.
    loo = make_split(skewed)
    assert np.array_equal(split.test.users, loo.test.users)
    assert np.array_equal(split.test.lengths, loo.test.lengths)
    assert not test_new[targets(skewed, split.valid)].any()
    assert (new[targets(skewed, split.test)]).any()
    # Fixed: the same items every time.
    again, _ = cold_item_sets(skewed)
    assert np.array_equal(again, test_new)


def test_cold_items_come_from_every_popularity_quintile(skewed: Dataset) -> None:
    test_new, _ = cold_item_sets(skewed)
    counts = np.bincount(skewed.item, minlength=skewed.n_items)
    order = np.argsort(counts, kind="stable")
    for stratum in np.array_split(order, 5):
        assert test_new[stratum].sum() == 2  # 20% of 10 items in each


def test_cold_time_trains_before_the_cut_only(skewed: Dataset) -> None:
    split = make_split(skewed, "cold-time:0.5")
    cut = np.quantile(skewed.timestamp, 0.5)
    train = prefix_mask(skewed, split.train)
    assert (skewed.timestamp[train] < cut).all()
    assert (skewed.timestamp[~train] >= cut).all()
    # Evaluated users are judged on their last two items, both after the cut.
    assert np.array_equal(split.test.lengths + 1, skewed.lengths[split.test.users])
    starts = skewed.offsets[split.valid.users] + split.valid.lengths
    assert (skewed.timestamp[starts] >= cut).all()
    counts = interaction_counts(skewed, split.train)
    first = np.full(skewed.n_items, np.iinfo(np.int64).max)
    np.minimum.at(first, skewed.item, skewed.timestamp)
    assert np.array_equal(counts == 0, first >= cut)


@pytest.mark.parametrize("bad", ["cold-items:0.9", "cold-items:x", "ratio:0.1", "cold", ""])
def test_bad_schemes_are_named(bad: str) -> None:
    with pytest.raises(Ur4recError, match="scheme"):
        parse_scheme(bad)
    with pytest.raises(ConfigError, match="data.scheme"):
        load_config(None, [f"data.scheme={bad!r}" if bad else "data.scheme=''"])


def test_scheme_values_parse() -> None:
    assert parse_scheme("cold-items") == ("cold-items", None)
    assert parse_scheme("cold-items:0.3") == ("cold-items", 0.3)
    assert parse_scheme("cold-time:0.7") == ("cold-time", 0.7)


def _inputs(dataset: Dataset, scheme: str, name: str, **model: object) -> ModelInputs:
    cfg = RunConfig()
    cfg.model = ModelConfig(name=name, hidden=8, heads=2, inner=16, layers=1, **model)
    cfg.data.max_len = 6
    split = make_split(dataset, scheme)
    texts = TextFeatures(torch.randn(dataset.n_items, 12), torch.randn(dataset.n_users, 12), [])
    return ModelInputs(cfg, dataset, split.train, texts=texts)


def test_a_new_item_has_no_id_vector_and_no_training_class(skewed: Dataset) -> None:
    torch.manual_seed(0)
    inputs = _inputs(skewed, "cold-items", "sasrec")
    model = SASRec.build(inputs)
    new = interaction_counts(skewed, inputs.train) == 0
    assert (model.item_vectors()[torch.from_numpy(new)] == 0).all()
    windows = TrainWindows(skewed, inputs.train, 6)
    batch = next(windows.batches(16, torch.Generator().manual_seed(0)))
    model.training_loss(batch, torch.Generator().manual_seed(0)).backward()
    grad = model.item_emb.weight.grad[: skewed.n_items]
    assert (grad[torch.from_numpy(new)] == 0).all() and grad[torch.from_numpy(~new)].abs().sum() > 0
    # Sampled negatives are trained items only.
    draws = model.sampler.sample((2000,), torch.Generator().manual_seed(0))
    assert not new[draws.numpy()].any()


def test_content_sasrec_scores_a_new_item_by_its_text(skewed: Dataset) -> None:
    torch.manual_seed(0)
    inputs = _inputs(skewed, "cold-items", "sasrec-content", id_residual=0.5)
    model = ContentSASRec.build(inputs)
    with torch.no_grad():
        model.item_emb.weight.mul_(100.0)  # ID vectors far longer than the bound
    new = torch.from_numpy(interaction_counts(skewed, inputs.train) == 0)
    vectors = model.item_vectors()
    content = model.feature_proj(model.item_features)
    assert torch.allclose(vectors[new], content[new])
    residual = (vectors - content)[~new].norm(dim=1)
    assert (residual <= 0.5 * content[~new].norm(dim=1) + 1e-5).all()
    assert model.uses_text and set(model.inference_inputs()) == {"item_text"}


def test_id_dropout_drops_whole_id_vectors_in_training_only(skewed: Dataset) -> None:
    torch.manual_seed(0)
    inputs = _inputs(skewed, "leave-one-out", "sasrec-content", id_dropout=0.5)
    model = ContentSASRec.build(inputs)
    content = model.feature_proj(model.item_features).detach()
    model.train()
    dropped = (model.item_vectors() - content).detach().norm(dim=1) == 0
    assert 0.3 < float(dropped.float().mean()) < 0.7  # about half, whole vectors
    model.eval()
    assert not bool(((model.item_vectors() - content).detach().norm(dim=1) == 0).any())
    with pytest.raises(ConfigError, match="model.id_dropout"):
        load_config(None, ["model.id_dropout=1"])


def test_id_dropout_keeps_one_mask_per_training_step(skewed: Dataset) -> None:
    # A step's histories and the items it scores must drop the same IDs.
    torch.manual_seed(0)
    inputs = _inputs(skewed, "leave-one-out", "sasrec-content", id_dropout=0.5)
    model = ContentSASRec.build(inputs)
    model.train()
    content = model.feature_proj(model.item_features).detach()

    def dropped() -> torch.Tensor:
        return (model.item_vectors() - content).detach().norm(dim=1) == 0

    first = dropped()
    assert torch.equal(first, dropped())  # same step: same mask
    windows = TrainWindows(skewed, inputs.train, 6)
    batch = next(windows.batches(16, torch.Generator().manual_seed(0)))
    model.training_loss(batch, torch.Generator().manual_seed(0))  # a new step draws anew
    assert not torch.equal(first, dropped())


def test_fusion_gives_a_new_items_id_branch_weight_to_the_text_branch() -> None:
    fusion = Fusion(FusionConfig(method="fixed", sasrec_weight=0.4, prior="ease"), 4, 4)
    fusion.set_prior_weight(0.5)
    new = torch.tensor([False, False, False, True, True])
    fusion.set_new_items(new, sasrec_scores_them=False)
    seq = torch.tensor([[3.0, 1.0, 2.0, 0.0, 0.0]])
    ret = torch.tensor([[0.1, 0.5, 0.2, 0.9, 0.3]])
    prior = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0]])
    fused, _ = fusion(seq, ret, torch.zeros(1, 4), torch.zeros(1, 4), prior)
    z_ret = standardise(ret)
    assert torch.allclose(fused[0, 3:], z_ret[0, 3:])  # new items: the retriever alone
    z_seq, z_prior = standardise(seq, over=~new), standardise(prior, over=~new)
    expected = 0.4 * z_seq + 0.6 * z_ret + 0.5 * z_prior
    assert torch.allclose(fused[0, :3], expected[0, :3])
    # Without new items nothing changes.
    fusion.set_new_items(torch.zeros(5, dtype=torch.bool), sasrec_scores_them=False)
    plain, _ = fusion(seq, ret, torch.zeros(1, 4), torch.zeros(1, 4), prior)
    assert torch.allclose(plain, 0.4 * standardise(seq) + 0.6 * z_ret + 0.5 * standardise(prior))


def test_text_knn_is_the_cosine_of_the_last_items_mean() -> None:
    text = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    model = TextKNN(text, recent=2)
    left = HistoryBatch(torch.tensor([0]), torch.tensor([[PAD, 0, 1, 2]]))
    right = HistoryBatch(torch.tensor([0]), torch.tensor([[1, PAD, 2, PAD]]))
    user = torch.nn.functional.normalize(text[1] + text[2], dim=0)
    assert torch.allclose(model.score(left)[0], text @ user, atol=1e-6)
    assert torch.allclose(model.score(right)[0], text @ user, atol=1e-6)
    empty = HistoryBatch(torch.tensor([0]), torch.full((1, 3), PAD))
    assert torch.isfinite(model.score(empty)).all()


def test_groups_partition_the_users() -> None:
    counts = np.array([0, 5, 25, 40])
    groups = user_groups(counts, np.array([0, 1, 2, 3, 0]), np.array([3, 12, 10, 11, 1]))
    assert groups["cold"].tolist() == [True, False, False, False, True]
    assert groups["tail"].tolist() == [False, True, False, False, False]
    assert (groups["warm"] == (groups["tail"] | groups["head"])).all()
    assert groups["short"].tolist() == [True, False, True, False, True]
    metrics = group_metrics(np.array([0, 50, 3, 9, 20]), groups)
    assert metrics["cold"]["users"] == 2 and metrics["cold"]["hit@10"] == 0.5
    tight = user_groups(counts, np.array([1]), np.array([3]), GroupSpec(tail_below=5))
    assert tight["head"].tolist() == [True]
    with pytest.raises(ValueError, match="tail_below"):
        GroupSpec(tail_below=0)


def test_evaluate_reports_groups_that_add_up(skewed: Dataset) -> None:
    split = make_split(skewed, "cold-items")
    evaluator = Evaluator(skewed, split, "test")
    model = TextKNN(torch.randn(skewed.n_items, 8))
    result = evaluator.evaluate(model)
    groups = result["groups"]
    assert groups["cold"]["users"] + groups["warm"]["users"] == result["users"]
    assert groups["tail"]["users"] + groups["head"]["users"] == groups["warm"]["users"]
    assert groups["short"]["users"] + groups["long"]["users"] == result["users"]
    assert groups["cold"]["users"] > 0
    ranks = evaluator.ranks(model).numpy()
    cold = groups["cold"]
    assert cold["hit@10"] == pytest.approx(float((ranks[evaluator.groups["cold"]] < 10).mean()))


def test_content_sasrec_trains_and_evaluates_by_group_on_a_cold_split(
    cyclic_folder: Path, tmp_path: Path, capsys
) -> None:
    from .test_trainer import TINY

    prepare_dataset("ml-100k", source=cyclic_folder)
    out = tmp_path / "run"
    sets = [*TINY, "model.name=sasrec-content", "model.id_residual=0.5", "data.scheme=cold-items"]
    config = Path(__file__).resolve().parent.parent / "configs" / "sasrec-ml-100k.yaml"
    argv = ["train", "--config", str(config), "--out", str(out), "--quiet"]
    argv += [x for o in sets for x in ("--set", o)]
    assert main(argv) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--json", "--tail-below", "5"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["scheme"] == "cold-items"
    assert result["groups"]["cold"]["users"] > 0
    assert "1-4" in result["group_rules"]["tail"]
    assert main(["evaluate", str(out)]) == 0
    assert "cold" in capsys.readouterr().out
