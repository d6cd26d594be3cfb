"""RP3beta co-occurrence (models/cooccurrence.py) and UR4Rec's co-occurrence branch."""

from pathlib import Path

import numpy as np
import pytest
import torch

from ur4rec.config import (
    ConfigError,
    FusionConfig,
    MemoryConfig,
    ModelConfig,
    RetrieverConfig,
    RunConfig,
    load_config,
)
from ur4rec.data.batches import HistoryBatch, last_items
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.splits import PAD, interaction_counts, make_split, prefix_mask
from ur4rec.errors import Ur4recError
from ur4rec.models import ModelInputs, build_model, cooccurrence
from ur4rec.models.cooccurrence import neighbour_scores, rp3beta_neighbours
from ur4rec.models.fusion import standardise
from ur4rec.models.ur4rec import (
    COOCCURRENCE_GRID,
    RARE_BONUS_GRID,
    RARE_WEIGHT_GRID,
    UR4Rec,
)

from .test_ur4rec import MAX_LEN, N_ITEMS, N_USERS, TEXT_DIM, TINY_UR4REC, batch, train_batch

CONFIG = Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"


def dense_rp3beta(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """The textbook form: P_iu (rows of X^T normalised) @ P_ui (rows of X normalised), to the
    power alpha, each column divided by its item's popularity^beta, no self-loops."""
    p_ui = x / np.maximum(x.sum(1, keepdims=True), 1)
    p_iu = x.T / np.maximum(x.T.sum(1, keepdims=True), 1)
    w = (p_iu @ p_ui) ** alpha / np.maximum(x.sum(0), 1)[None, :] ** beta
    np.fill_diagonal(w, 0.0)
    return w


@pytest.fixture
def cyclic(cyclic_folder: Path, tmp_path: Path):
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder, root=str(tmp_path / "data"))
    return dataset, make_split(dataset)


def multi_hot(dataset, train) -> np.ndarray:
    mask = prefix_mask(dataset, train)
    users = np.repeat(np.arange(dataset.n_users), dataset.lengths)[mask]
    x = np.zeros((dataset.n_users, dataset.n_items))
    x[users, dataset.item[mask]] = 1.0
    return x


def test_rp3beta_neighbours_are_the_top_of_the_dense_matrix(cyclic, monkeypatch) -> None:
    dataset, split = cyclic
    x = multi_hot(dataset, split.train)
    dense = dense_rp3beta(x, 0.7, 0.4)
    top = 5
    indices, weights = rp3beta_neighbours(dataset, split.train, 0.7, 0.4, top)
    assert indices.shape == weights.shape == (dataset.n_items, top)
    for item in range(dataset.n_items):
        expected = np.sort(dense[item])[::-1][:top]
        np.testing.assert_allclose(weights[item].numpy(), expected, rtol=1e-5, atol=1e-7)
        # Each kept weight is the dense matrix's entry for that neighbour.
        np.testing.assert_allclose(
            dense[item, indices[item].numpy()], weights[item].numpy(), rtol=1e-5, atol=1e-7
        )
    # Fitted in blocks of rows: the block size changes nothing.
    monkeypatch.setattr(cooccurrence, "BLOCK_ENTRIES", 3 * dataset.n_items)  # 3 rows a block
    again = rp3beta_neighbours(dataset, split.train, 0.7, 0.4, top)
    torch.testing.assert_close(again[1], weights)
    # More neighbours than other items: every other item, once.
    indices, _ = rp3beta_neighbours(dataset, split.train, top=10_000)
    assert indices.shape[1] == dataset.n_items - 1
    assert all(item not in row for item, row in enumerate(indices.tolist()))


def test_rp3beta_scores_a_user_by_the_rows_of_their_items(cyclic) -> None:
    dataset, split = cyclic
    x = multi_hot(dataset, split.train)
    dense = torch.from_numpy(dense_rp3beta(x, 0.5, 0.5)).float()
    n = dataset.n_items
    indices, weights = rp3beta_neighbours(dataset, split.train, top=n)  # all: exact
    items = torch.tensor([[PAD, PAD, 1, 2, 1], [3, PAD, 4, PAD, PAD], [PAD] * 5])
    scores = neighbour_scores(indices, weights, items, n)
    torch.testing.assert_close(scores[0], dense[1] + dense[2])  # item 1 twice counts once
    torch.testing.assert_close(scores[1], dense[3] + dense[4])  # padding anywhere
    assert not scores[2].any()  # no history: nothing
    # Items added after fitting score 0 and count for nothing in a history.
    wider = neighbour_scores(indices, weights, torch.tensor([[1, n + 1]]), n + 2)
    assert wider.shape == (1, n + 2) and not wider[0, n:].any()
    torch.testing.assert_close(wider[0, :n], dense[1])


def test_rp3beta_rejects_bad_settings_and_the_config_names_them(cyclic) -> None:
    dataset, split = cyclic
    for alpha, beta, top in ((0.0, 0.5, 10), (0.5, -1.0, 10), (0.5, 0.5, 0)):
        with pytest.raises(Ur4recError, match="rp3beta needs"):
            rp3beta_neighbours(dataset, split.train, alpha, beta, top)
    for model, override, key in (
        ("ur4rec", "fusion.cooccurrence=graph", "fusion.cooccurrence"),
        ("ur4rec", "fusion.cooccurrence_alpha=0", "fusion.cooccurrence_alpha"),
        ("ur4rec", "fusion.rare_bonus=-1", "fusion.rare_bonus"),
        ("ur4rec", "fusion.rare_below=1", "fusion.rare_below"),
        ("ur4rec", "fusion.cooccurrence_recent=0", "fusion.cooccurrence_recent"),
        ("rp3beta", "rp3beta.alpha=0", "rp3beta.alpha"),  # the model alone: its own keys
        ("rp3beta", "rp3beta.beta=-0.5", "rp3beta.beta"),
        ("rp3beta", "rp3beta.top=0", "rp3beta.top"),
        ("rp3beta", "rp3beta.recent=-1", "rp3beta.recent"),
    ):
        with pytest.raises(ConfigError, match=key):
            load_config(None, [f"model.name={model}", override])


def tiny_with_branch() -> tuple[UR4Rec, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    indices = torch.stack([torch.randperm(N_ITEMS)[:4] for _ in range(N_ITEMS)])
    weights = torch.rand(N_ITEMS, 4)
    model = UR4Rec(
        N_USERS, N_ITEMS, MAX_LEN,
        ModelConfig(name="ur4rec", hidden=8, heads=2, inner=16, dropout=0.0, attn_dropout=0.0),
        RetrieverConfig(dim=8, experts=3, proxies=2, dropout=0.0),
        FusionConfig(method="fixed", cooccurrence="rp3beta", cooccurrence_recent=6),
        MemoryConfig(), torch.randn(N_ITEMS, TEXT_DIM), torch.randn(N_USERS, TEXT_DIM), 8,
        cooccurrence=(indices, weights),
    ).eval()  # fmt: skip
    rare = torch.zeros(N_ITEMS, dtype=torch.bool)
    rare[[2, 5, 7]] = True
    model.fusion.set_rare_items(rare)
    return model, indices, weights


def test_the_branch_adds_its_weights_z_score_and_rare_items_more() -> None:
    model, indices, weights = tiny_with_branch()
    b = batch()
    with torch.no_grad():
        out = model.branch_scores(b)
        expected = neighbour_scores(indices, weights, last_items(b.items, 6), N_ITEMS)
        torch.testing.assert_close(out["cooccurrence"], expected)
        off = model.combine(dict(out))
        model.apply_calibration({"cooccurrence_weight": 0.2, "rare_weight": 0.3, "rare_bonus": 0.5})
        on = model.combine(dict(out))
    z = standardise(expected)
    rare = model.fusion.rare_items
    torch.testing.assert_close(on - off, 0.2 * z + rare * (0.3 * z + 0.5))
    # Data, not weights: only the three weights are saved, and describe() reports them.
    state = model.state_dict()
    assert "cooc_indices" not in state and "fusion.rare_bonus" in state
    assert model.describe() == {"cooccurrence_weight": 0.2, "rare_weight": 0.3, "rare_bonus": 0.5}
    # It plays no part in training.
    model.objective = "fused"
    loss = model.training_loss(train_batch(), torch.Generator().manual_seed(0))
    model.apply_calibration({"cooccurrence_weight": 0.0, "rare_weight": 0.0, "rare_bonus": 0.0})
    assert model.training_loss(train_batch(), torch.Generator().manual_seed(0)).item() == (
        loss.item()
    )


def test_the_branch_reads_more_of_the_history_than_sasrec() -> None:
    """A history longer than data.max_len: the branch reads its last cooccurrence_recent
    items, and serving from states gives the same scores as scoring the batch."""
    model, indices, weights = tiny_with_branch()
    long = HistoryBatch(torch.tensor([0]), torch.tensor([[1, 2, 3, 4, 5, 6, 7, 8]]))
    model.apply_calibration({"cooccurrence_weight": 0.3, "rare_weight": 0.15, "rare_bonus": 0.3})
    with torch.no_grad():
        out = model.branch_scores(long)
        expected = neighbour_scores(indices, weights, torch.tensor([[3, 4, 5, 6, 7, 8]]), N_ITEMS)
        torch.testing.assert_close(out["cooccurrence"], expected)
        states = model.user_states(long)
        assert "cooccurrence" not in states and states["cooccurrence_items"].shape == (1, 6)
        full = model.scores_from_states(states)
        torch.testing.assert_close(full["score"], model.score(long))
        model.prepare_for_inference()
        items = torch.tensor([[0, 2, 5, 9]])
        candidates = model.candidate_scores(model.user_states(long), items)
    torch.testing.assert_close(candidates["score"], full["score"].gather(1, items), atol=1e-4,
                               rtol=1e-4)  # fmt: skip
    torch.testing.assert_close(candidates["cooccurrence"], full["cooccurrence"].gather(1, items))


def test_an_added_item_gets_nothing_from_the_branch() -> None:
    model, _, _ = tiny_with_branch()
    model.apply_calibration({"cooccurrence_weight": 0.3, "rare_weight": 0.35, "rare_bonus": 0.3})
    with torch.no_grad():
        before = model.score(batch())
        model.add_items(torch.randn(2, TEXT_DIM))
        model.prepare_for_inference()
        out = model.branch_scores(batch())
        after = model.combine(dict(out))
    assert model.fusion.rare_items.shape == (N_ITEMS + 2,)
    assert not model.fusion.rare_items[N_ITEMS:].any()
    assert not out["cooccurrence"][:, N_ITEMS:].any()
    term = model.fusion.cooccurrence_term(out["cooccurrence"])
    assert not term[:, N_ITEMS:].any()  # neither weight nor bonus for a new item
    assert after.shape == (3, N_ITEMS + 2) and bool(torch.isfinite(after).all())
    assert before.shape == (3, N_ITEMS)


def test_calibration_chooses_the_branch_weights_on_validation(cyclic_folder: Path) -> None:
    from ur4rec.eval.evaluator import Evaluator
    from ur4rec.runs import build

    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    overrides = ["data.dataset=ml-100k", *TINY_UR4REC, "fusion.prior=ease",
                 "fusion.cooccurrence=rp3beta", "fusion.rare_below=3"]  # fmt: skip
    cfg = load_config(CONFIG, overrides)
    model, split, _ = build(cfg, dataset)
    assert isinstance(model, UR4Rec) and model.cooc_indices is not None
    counts = torch.from_numpy(interaction_counts(dataset, split.train))
    expected_rare = ((counts >= 1) & (counts < 3)).float()
    torch.testing.assert_close(model.fusion.rare_items, expected_rare)
    valid = Evaluator(dataset, split, "valid", "full")
    result = model.calibrate(valid, "ndcg@10", cfg.stages)
    assert result is not None
    chosen = result.chosen
    assert chosen["cooccurrence_weight"] in COOCCURRENCE_GRID
    assert chosen["rare_weight"] in RARE_WEIGHT_GRID and chosen["rare_bonus"] in RARE_BONUS_GRID
    assert {"sasrec_weight", "prior_weight"} <= set(chosen)
    assert result.metrics["ndcg@10"] == pytest.approx(valid.evaluate(model)["ndcg@10"])
    # No point of the branch's grid beats it, each scored by a plain evaluation.
    best = result.metrics["ndcg@10"]
    for w in COOCCURRENCE_GRID:
        for r in RARE_WEIGHT_GRID:
            for b in RARE_BONUS_GRID:
                model.apply_calibration({"cooccurrence_weight": w, "rare_weight": r,
                                         "rare_bonus": b})  # fmt: skip
                assert valid.evaluate(model)["ndcg@10"] <= best + 1e-12
    # A model without the branch says so.
    plain, _, _ = build(load_config(CONFIG, overrides[:-2]), dataset)
    with pytest.raises(Ur4recError, match="no co-occurrence branch"):
        plain.calibrate_cooccurrence(valid, "ndcg@10")


def test_the_rp3beta_model_is_the_branch_alone(cyclic, monkeypatch) -> None:
    """``model.name: rp3beta`` scores a history as neighbour_scores does, reads the last
    ``recent`` items only where asked, and compares items by their neighbour rows."""
    from ur4rec.eval.baselines import build_baseline, describe_baseline

    dataset, split = cyclic
    n = dataset.n_items
    x = multi_hot(dataset, split.train)
    dense = torch.from_numpy(dense_rp3beta(x, 0.7, 0.25)).float()
    model = build_baseline("rp3beta", dataset, split, alpha=0.7, beta=0.25)
    assert describe_baseline(model) == {"alpha": 0.7, "beta": 0.25, "recent": 0}
    history = torch.tensor([[PAD, 3, 1, 2], [PAD, PAD, PAD, 5]])
    scores = model.score(HistoryBatch(torch.tensor([0, 1]), history))
    # The default keeps 200 neighbours, more than the 19 other items: the dense rows exactly.
    torch.testing.assert_close(scores[0], dense[1] + dense[2] + dense[3])
    torch.testing.assert_close(scores[1], dense[5])
    recent = build_baseline("rp3beta", dataset, split, alpha=0.7, beta=0.25, recent=2)
    torch.testing.assert_close(
        recent.score(HistoryBatch(torch.tensor([0]), history[:1])), (dense[1] + dense[2])[None]
    )
    torch.testing.assert_close(model.item_space(), dense)
    # Past DENSE_ITEM_SPACE items, a fixed projection of the same rows: n x ITEM_SPACE_DIM,
    # its cosines near the rows' own.
    monkeypatch.setattr(cooccurrence, "DENSE_ITEM_SPACE", 1)
    projected = model.item_space()
    assert projected.shape == (n, cooccurrence.ITEM_SPACE_DIM)
    torch.testing.assert_close(projected, model.item_space())  # the same every call
    exact = torch.nn.functional.normalize(dense, dim=1)
    approx = torch.nn.functional.normalize(projected, dim=1)
    assert (exact @ exact.T - approx @ approx.T).abs().max() < 0.3


def test_rp3beta_baseline_chooses_alpha_and_beta_on_validation(cyclic) -> None:
    from ur4rec.eval.baselines import (
        RP3_ALPHA_GRID,
        RP3_BETA_GRID,
        best_rp3beta,
        build_baseline,
        rp3beta_sweep,
        tune_rp3beta,
    )
    from ur4rec.eval.evaluator import Evaluator

    dataset, split = cyclic
    rows = rp3beta_sweep(dataset, split)
    assert len(rows) == len(RP3_ALPHA_GRID) * len(RP3_BETA_GRID)
    best = max(rows, key=lambda r: (r["ndcg@10"], -r["alpha"], -r["beta"]))
    chosen = build_baseline("rp3beta", dataset, split)
    assert (chosen.alpha, chosen.beta) == (best["alpha"], best["beta"])
    # A given alpha is kept and only beta is searched.
    fixed = [r for r in rows if r["alpha"] == 1.0]
    top = max(fixed, key=lambda r: (r["ndcg@10"], -r["beta"]))
    assert tune_rp3beta(dataset, split, alpha=1.0) == (1.0, top["beta"])
    with pytest.raises(Ur4recError, match="grid is empty"):
        rp3beta_sweep(dataset, split, alphas=())
    with pytest.raises(Ur4recError, match="no RP3beta sweep rows"):
        best_rp3beta([])
    # With a window, each setting is measured reading that window, and the choice is made
    # from those figures.
    windowed = rp3beta_sweep(dataset, split, alphas=(0.5,), betas=(0.25,), recent=1)
    cfg = RunConfig()
    cfg.model.name = "rp3beta"
    cfg.rp3beta.alpha, cfg.rp3beta.beta, cfg.rp3beta.recent = 0.5, 0.25, 1
    model = build_model(ModelInputs(cfg, dataset, split.train))
    valid = Evaluator(dataset, split, "valid", "full").evaluate(model)
    assert windowed[0]["ndcg@10"] == pytest.approx(float(valid["ndcg@10"]))
    recent = build_baseline("rp3beta", dataset, split, recent=1)
    assert recent.recent == 1
    assert (recent.alpha, recent.beta) == best_rp3beta(rp3beta_sweep(dataset, split, recent=1))


def test_rp3beta_baseline_on_the_command_line(capsys, cyclic_folder: Path) -> None:
    import json

    from ur4rec.cli import main

    prepare_dataset("ml-100k", source=cyclic_folder)
    args = ["baseline", "rp3beta", "--dataset", "ml-100k", "--json"]
    assert main([*args, "--alpha", "0.5", "--beta", "0.5"]) == 0
    given = json.loads(capsys.readouterr().out)
    assert given["alpha_beta_from"] == "--alpha --beta"
    assert (given["alpha"], given["beta"]) == (0.5, 0.5)
    assert main([*args, "--alpha", "0.5"]) == 0
    tuned = json.loads(capsys.readouterr().out)
    assert tuned["alpha_beta_from"] == "--alpha validation (beta)" and tuned["alpha"] == 0.5
    assert tuned["beta"] in (0.0, 0.25, 0.5, 0.75)
