import copy
import json
from pathlib import Path

import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import (
    FusionConfig,
    MemoryConfig,
    ModelConfig,
    RetrieverConfig,
    StageConfig,
    load_config,
)
from ur4rec.data.batches import HistoryBatch, TrainBatch
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.splits import PAD, make_split
from ur4rec.data.windows import TrainWindows
from ur4rec.models import losses
from ur4rec.models.ur4rec import SASREC_GRID, UR4Rec
from ur4rec.train.stages import configure

N_USERS, N_ITEMS, TEXT_DIM, MAX_LEN = 5, 12, 16, 4


def tiny_model(
    fusion: str = "gate", memory: bool = False, n_windows: int = 8, **retriever
) -> UR4Rec:
    torch.manual_seed(0)
    return UR4Rec(
        N_USERS, N_ITEMS, MAX_LEN,
        ModelConfig(name="ur4rec", hidden=8, heads=2, inner=16, dropout=0.0, attn_dropout=0.0),
        RetrieverConfig(dim=8, experts=3, proxies=2, dropout=0.0, **retriever),
        FusionConfig(method=fusion), MemoryConfig(enabled=memory),
        torch.randn(N_ITEMS, TEXT_DIM), torch.randn(N_USERS, TEXT_DIM), n_windows,
    )  # fmt: skip


def batch() -> HistoryBatch:
    return HistoryBatch(
        torch.tensor([0, 1, 2]), torch.tensor([[PAD, 1, 2, 3], [4, 5, 6, 7], [PAD, PAD, PAD, 9]])
    )


def train_batch() -> TrainBatch:
    users = torch.tensor([0, 1])
    windows = torch.tensor([0, 1])
    inputs = torch.tensor([[PAD, 1, 2, 3], [4, 5, 6, 7]])
    targets = torch.tensor([[PAD, 2, 3, 4], [5, 6, 7, 8]])
    return TrainBatch(users, windows, inputs, targets)


def step(model: UR4Rec, lr: float = 0.1) -> None:
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=lr)
    loss = model.training_loss(train_batch(), torch.Generator().manual_seed(0))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    model.eval()


@pytest.mark.parametrize("router", ["dense", "topk"])
def test_vectorised_scores_equal_a_naive_loop(router: str) -> None:
    model = tiny_model(router=router, top_k=2).eval()
    model.objective = "retriever"
    b = batch()
    scores = model.score(b)
    with torch.no_grad():
        items = model.retriever.item_vectors()
        for row in range(len(b.users)):
            # One user at a time, one item at a time.
            vectors, _, _ = model.retriever.user_states(
                b.users[row : row + 1], b.items[row : row + 1]
            )
            user = vectors[0, -1]
            for item in range(N_ITEMS):
                cosine = torch.dot(user, items[item]) / (user.norm() * items[item].norm())
                expected = cosine / model.retriever_cfg.temperature
                assert scores[row, item].item() == pytest.approx(expected.item(), abs=1e-4)


def test_scores_finite_and_padding_independent() -> None:
    model = tiny_model().eval()
    for objective in ("sasrec", "retriever", "fused"):
        model.objective = objective
        a = model.score(HistoryBatch(torch.tensor([0]), torch.tensor([[PAD, PAD, 1, 2]])))
        b = model.score(HistoryBatch(torch.tensor([0]), torch.tensor([[1, 2]])))
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_memory_is_written_in_training_and_read_at_evaluation() -> None:
    model = tiny_model(memory=True)
    # Window 1 is user 1's earlier window; window 0 is user 0's... and their later windows.
    model.memory.bind(
        torch.tensor([-1, 2, -1, -1, -1, -1, -1, -1]), torch.tensor([0, 2, -1, -1, -1])
    )
    model.objective = "retriever"
    model.write_memory = True
    with torch.no_grad():
        model.memory.read_proj.weight.normal_()  # a memory that is read makes a difference
    before = model.memory.prev.clone(), model.memory.summary.clone()
    assert not model.memory.written.any()
    b = HistoryBatch(torch.tensor([1]), torch.tensor([[4, 5, 6, 7]]))
    step(model)
    assert model.memory.written.tolist() == [False, False, True, False, False, False, False, False]
    assert not torch.equal(model.memory.summary, before[1])
    # User 1's most recent window is window 2, which now holds what came before it.
    with_memory = model.score(b)
    model.memory.written.zero_()
    without = model.score(b)
    assert not torch.allclose(with_memory, without)


def test_window_memory_never_holds_a_later_item(tmp_path: Path, cyclic_folder: Path) -> None:
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    split = make_split(dataset)
    windows = TrainWindows(dataset, split.train, max_len=3)
    for w, nxt in enumerate(windows.later.tolist()):
        if nxt < 0:
            assert windows.last_window[windows.users[w]] == w
            continue
        assert windows.users[w] == windows.users[nxt]
        earlier, later = windows.windows[w], windows.windows[nxt]
        # w's inputs all come before the later window's first target.
        seq = dataset.sequence(int(windows.users[w])).tolist()
        last_input = seq.index(int(earlier[-2]))
        first_target = seq.index(int(later[later != PAD][1]))
        assert last_input < first_target


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize(
    ("method", "moves"),
    [
        ("fixed", False),
        ("scalar", True),
        ("gate", True),
        ("curriculum", False),
        ("uncertainty", True),
    ],
)
def test_fusion_weights_move_or_stay(method: str, moves: bool) -> None:
    model = tiny_model(fusion=method)
    configure(
        model,
        StageConfig("joint", train=["sasrec", "retriever", "fusion"], objective="fused"),
        load_config(None),
    )
    states = torch.randn(2, 8), torch.randn(2, 8)
    w_before = model.fusion.sasrec_weight(*states).detach().clone()
    before = snapshot(model.fusion)
    step(model, lr=0.5)
    after = snapshot(model.fusion)
    learned = {"scalar": "weight_logit", "gate": "gate.2.bias", "uncertainty": "log_var"}
    if moves:
        assert not torch.equal(before[learned[method]], after[learned[method]])
        assert not torch.allclose(model.fusion.sasrec_weight(*states), w_before)
    else:
        torch.testing.assert_close(model.fusion.sasrec_weight(*states), w_before)
    if method == "fixed":
        assert torch.allclose(w_before, torch.tensor(0.4))
    if method == "curriculum":
        model.on_epoch_start(0, 5)
        assert model.fusion.sasrec_weight(*states)[0].item() == pytest.approx(0.9)
        model.on_epoch_start(4, 5)
        assert model.fusion.sasrec_weight(*states)[0].item() == pytest.approx(0.4)
    if method == "gate":
        w = model.fusion.sasrec_weight(*states)
        assert w[0].item() != pytest.approx(w[1].item())  # user-specific


def test_frozen_modules_do_not_change() -> None:
    model = tiny_model(memory=True)
    cfg = load_config(None)
    configure(model, StageConfig("r", train=["retriever"], objective="retriever"), cfg)
    sasrec, fusion, memory = snapshot(model.sasrec), snapshot(model.fusion), snapshot(model.memory)
    retriever = snapshot(model.retriever)
    step(model)
    assert all(torch.equal(sasrec[k], v) for k, v in model.sasrec.state_dict().items())
    assert all(torch.equal(fusion[k], v) for k, v in model.fusion.state_dict().items())
    assert all(torch.equal(memory[k], v) for k, v in model.memory.state_dict().items())
    assert any(not torch.equal(retriever[k], v) for k, v in model.retriever.state_dict().items())


@pytest.mark.parametrize("loss", ["in_batch", "mined"])
def test_retriever_negative_options_train(loss: str) -> None:
    model = tiny_model(loss=loss, negatives=3)
    model.objective = "retriever"
    value = model.training_loss(train_batch(), torch.Generator().manual_seed(0))
    assert torch.isfinite(value)
    value.backward()


def test_reranker_keeps_top_candidates_on_top() -> None:
    model = tiny_model(rerank_top=3).eval()
    model.objective = "retriever"
    scores = model.score(batch())
    plain = copy.deepcopy(model)
    plain.reranker = None
    base = plain.score(batch())
    top = base.topk(3, dim=1).indices
    assert set(scores.topk(3, dim=1).indices[0].tolist()) == set(top[0].tolist())


TINY_UR4REC = [
    "model.name=ur4rec", "data.max_len=6", "model.hidden=16", "model.heads=2", "model.inner=32",
    "model.layers=1", "retriever.dim=16", "retriever.experts=2", "retriever.proxies=2",
    "train.batch_size=8", "train.lr=1e-2", "memory.enabled=true",
    "stages=[{name: pretrain_sasrec, epochs: 2, train: [sasrec], objective: sasrec},"
    " {name: pretrain_retriever, epochs: 2, train: [retriever, memory], objective: retriever},"
    " {name: joint_finetune, epochs: 2, train: [sasrec, retriever, memory, fusion]},"
    " {name: end_to_end, epochs: 1, train: [sasrec, retriever, fusion, text_encoder]}]",
]  # fmt: skip


def test_four_stage_run_end_to_end_through_the_cli(
    cyclic_folder: Path, tmp_path: Path, capsys
) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)
    out = tmp_path / "run"
    config = Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"
    argv = [
        "train",
        "--config",
        str(config),
        "--out",
        str(out),
        "--quiet",
        "--json",
        "--set",
        "data.dataset=ml-100k",
    ]
    for item in TINY_UR4REC:
        argv += ["--set", item]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert [s["stage"] for s in summary["stages"]] == [
        "pretrain_sasrec",
        "pretrain_retriever",
        "joint_finetune",
        "end_to_end",
    ]
    assert [s["epochs_run"] for s in summary["stages"]] == [2, 2, 2, 1]
    table = json.loads((out / "stages.json").read_text())
    assert [r["stage"] for r in table if r["protocol"] == "full"][1:] == [
        "pretrain_retriever",
        "joint_finetune",
        "end_to_end",
    ]
    assert "valid ndcg@10 change" in table[1]
    assert "protocol full" in (out / "stages.md").read_text()
    # fusion.method scalar (the config's) is calibrated on validation after each fused stage.
    weights = [s.get("sasrec_weight") for s in summary["stages"]]
    assert weights[:2] == [None, None] and set(weights[2:]) <= set(SASREC_GRID)
    # The finished run scores with the last stage's calibrated weight.
    from ur4rec.runs import load_run

    _, _, loaded = load_run(out)
    assert loaded.fusion.fixed_weight.item() == pytest.approx(weights[-1])
    assert main(["evaluate", str(out), "--protocol", "sampled:5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "ur4rec" and result["users"] == 40
    # Resuming a finished run changes nothing.
    assert main(["train", "--resume", str(out), "--quiet", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["test"] == summary["test"]


def test_leaked_user_texts_are_refused(cyclic_folder: Path, tmp_path: Path, capsys) -> None:
    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    split = make_split(dataset)
    from ur4rec.data.splits import targets

    leaked = {
        dataset.user_ids[u]: f"Loves {dataset.item_info[t].title}."
        for u, t in zip(split.test.users, targets(dataset, split.test), strict=True)
    }
    path = tmp_path / "leaked.json"
    path.write_text(json.dumps(leaked))
    argv = ["train", "--config", str(Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"),
            "--out", str(tmp_path / "r"), "--quiet", "--set", "data.dataset=ml-100k", "--set", f"text.user_texts={path}"]  # fmt: skip
    for item in TINY_UR4REC:
        argv += ["--set", item]
    assert main(argv) == 1
    assert "leakage audit finds held-out titles" in capsys.readouterr().err


def test_last_position_alone_equals_the_full_pass() -> None:
    model = tiny_model(memory=True).eval()
    b = batch()
    memory = torch.randn(3, 8)
    full, full_router, _ = model.retriever.user_states(b.users, b.items, memory)
    last, last_router, _ = model.retriever.user_states(b.users, b.items, memory, last_only=True)
    assert last.shape == (3, 1, 8)
    torch.testing.assert_close(last[:, 0], full[:, -1])
    torch.testing.assert_close(last_router[:, 0], full_router[:, -1])


@pytest.mark.slow  # about a minute: MiniLM runs forward and backward inside the stage
def test_text_encoder_last_layer_trains_in_a_stage(cyclic_folder: Path, tmp_path: Path) -> None:
    from ur4rec.text.encoder import _encoder_layers
    from ur4rec.train import run
    from ur4rec.train.trainer import load_state_into

    prepare_dataset("ml-100k", source=cyclic_folder)
    stages = (
        "stages=[{name: pretrain_sasrec, epochs: 1, train: [sasrec], objective: sasrec},"
        " {name: end_to_end, epochs: 1, train: [retriever, fusion, text_encoder],"
        " lr: {text_encoder: 1.0e-3}}]"
    )
    overrides = [*TINY_UR4REC[:-1], "memory.enabled=false", "text.trainable_layers=1", stages]
    cfg = load_config(Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml",
                      ["data.dataset=ml-100k", *overrides])  # fmt: skip
    out = run.train(cfg, tmp_path / "run", quiet=True)
    model = run.load_run(out)[2]
    first = run.load_run(out)[2]
    load_state_into(first, out / "stages" / "1-pretrain_sasrec" / "best.pt")
    layers_after = _encoder_layers(model.text_encoder.st)
    layers_before = _encoder_layers(first.text_encoder.st)
    changed = [
        not all(torch.equal(a, b) for a, b in zip(x.parameters(), y.parameters(), strict=True))
        for x, y in zip(layers_after, layers_before, strict=True)
    ]
    assert changed[-1] and not any(changed[:-1])  # only the last layer learned
    scores = model.score(HistoryBatch(torch.tensor([0, 1]), torch.tensor([[1, 2, 3], [4, 5, 6]])))
    assert torch.isfinite(scores).all()


def test_text_encoder_stays_trainable_after_a_stage_froze_it() -> None:
    from ur4rec.text.encoder import TrainableTextEncoder, _encoder_layers

    model = tiny_model()
    model.text_encoder = TrainableTextEncoder(trainable_layers=1)
    cfg = load_config(None, [])
    configure(model, StageConfig(name="a", train=["sasrec"], objective="sasrec"), cfg)
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    groups = configure(model, StageConfig(name="b", train=["retriever", "text_encoder"]), cfg)
    (encoder_group,) = [g for g in groups if g.name == "text_encoder"]
    last = list(_encoder_layers(model.text_encoder.st)[-1].parameters())
    assert {id(p) for p in encoder_group.params} == {id(p) for p in last}
    assert all(p.requires_grad for p in last)


def test_cached_item_vectors_score_the_same_and_never_go_stale() -> None:
    model = tiny_model().eval()
    plain = model.score(batch())
    model.sasrec.cache_item_vectors()
    model.retriever.cache_item_vectors()
    torch.testing.assert_close(model.score(batch()), plain)
    model.train()  # training drops the copies, so an update can never be served stale
    assert model.sasrec._item_cache is None and model.retriever._item_cache is None
    model.eval()
    model.retriever.cache_item_vectors()
    model.load_state_dict(tiny_model().state_dict())  # so does loading weights
    assert model.retriever._item_cache is None


def test_training_user_texts_are_written_before_each_target(cyclic_folder: Path) -> None:
    from ur4rec.text.corpus import snapshot_rows, template_snapshots
    from ur4rec.text.history import UserHistory, training_histories
    from ur4rec.text.templates import user_text

    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    split = make_split(dataset)
    every = 3
    texts, first_row = template_snapshots(dataset, every)
    windows = TrainWindows(dataset, split.train, 4)
    histories = training_histories(dataset, split)
    rows = snapshot_rows(windows.users.numpy(), windows.positions[:, 1:].numpy(), first_row, every)
    checked = 0
    for w in range(len(windows)):
        user = int(windows.users[w])
        for j, position in enumerate(windows.positions[w, 1:].tolist()):
            if position < 0:
                assert rows[w, j] == 0
            if int(windows.positions[w, j]) < 0:
                continue  # no input here, so no target is trained
            # The target at `position` is item `position` of the sequence; its text is written
            # from the latest cut-off at or before it, so never from the target or later items.
            cut = position // every * every
            assert cut <= position < cut + every
            history = UserHistory(histories[user].raw_user_id, histories[user].items[:cut])
            assert texts[rows[w, j]] == user_text(history)
            assert int(windows.windows[w, j + 1]) == int(dataset.sequence(user)[position])
            checked += 1
    assert checked == windows.n_targets


def test_retriever_reads_a_text_per_training_position() -> None:
    model = tiny_model()
    model.objective = "retriever"
    embeddings = torch.randn(6, TEXT_DIM)
    # Window 0's positions read rows 1 and 2, window 1's rows 3 and 4; row 5 is never read.
    rows = torch.tensor([[0, 1, 1, 2], [3, 3, 4, 4]])
    model.set_training_user_texts(embeddings, rows)

    def loss() -> float:
        model.eval()  # no dropout: the same inputs give the same loss
        return model.training_loss(train_batch(), torch.Generator().manual_seed(0)).item()

    base = loss()
    embeddings[5] += 1.0
    assert loss() == base
    embeddings[2] += 1.0
    assert loss() != base
    # Snapshots are inputs: they are not saved with the weights.
    assert "train_user_text" not in model.state_dict()
    # Evaluation reads the user's own (final) text, as before.
    scores = model.score(batch())
    model.set_training_user_texts(torch.randn(6, TEXT_DIM), rows)
    torch.testing.assert_close(model.score(batch()), scores)


def test_snapshot_texts_need_template_user_texts(cyclic_folder: Path, tmp_path: Path) -> None:
    from ur4rec.errors import Ur4recError
    from ur4rec.text.features import text_features

    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    path = tmp_path / "users.json"
    path.write_text(json.dumps({u: "Likes drama." for u in dataset.user_ids}))
    for overrides, message in [
        ([f"text.user_texts={path}"], "needs template user texts"),
        (["text.trainable_layers=1"], "does not combine"),
        (["text.user_text_every=-1"], "must be >= 0"),
    ]:
        # (not `"-1" in ...`: the tmp path may hold "-1", e.g. /tmp/pytest-of-root/pytest-100)
        every = (
            [] if overrides[0].startswith("text.user_text_every") else ["text.user_text_every=3"]
        )
        with pytest.raises(Ur4recError, match=message):  # at load time, or when texts are built
            cfg = load_config(
                None, ["model.name=ur4rec", "data.dataset=ml-100k", *every, *overrides]
            )
            text_features(cfg, dataset)


def test_ease_prior_joins_the_fused_scores_with_its_own_weight() -> None:
    from ur4rec.models.ease import recent_item_scores
    from ur4rec.models.fusion import standardise

    torch.manual_seed(0)
    prior = torch.randn(N_ITEMS, N_ITEMS)
    model = UR4Rec(
        N_USERS, N_ITEMS, MAX_LEN,
        ModelConfig(name="ur4rec", hidden=8, heads=2, inner=16, dropout=0.0, attn_dropout=0.0),
        RetrieverConfig(dim=8, experts=3, proxies=2, dropout=0.0),
        FusionConfig(method="fixed", prior="ease", prior_recent=2, prior_weight=0.0),
        MemoryConfig(), torch.randn(N_ITEMS, TEXT_DIM), torch.randn(N_USERS, TEXT_DIM), 8,
        prior=prior,
    ).eval()  # fmt: skip
    b = batch()
    out = model.branch_scores(b)
    torch.testing.assert_close(out["prior"], recent_item_scores(prior, b.items, 2))
    # Only the last two items count: [PAD, PAD, PAD, 9] reads item 9 alone.
    torch.testing.assert_close(out["prior"][2], prior[9])
    without = model.combine(dict(out))
    model.fusion.set_prior_weight(0.5)
    with_prior = model.combine(dict(out))
    torch.testing.assert_close(with_prior - without, 0.5 * standardise(out["prior"]))
    # The prior is data, not a weight: only its fusion weight is saved.
    assert "prior" not in model.state_dict() and "fusion.prior_weight" in model.state_dict()
    # It plays no part in training.
    model.objective = "fused"
    loss = model.training_loss(train_batch(), torch.Generator().manual_seed(0))
    model.fusion.set_prior_weight(0.0)
    again = model.training_loss(train_batch(), torch.Generator().manual_seed(0))
    assert loss.item() == again.item()


def test_calibration_with_the_prior_matches_a_plain_evaluation(
    cyclic_folder: Path,
) -> None:
    from ur4rec.eval.evaluator import Evaluator
    from ur4rec.models.ur4rec import PRIOR_GRID
    from ur4rec.runs import build

    dataset, _ = prepare_dataset("ml-100k", source=cyclic_folder)
    overrides = ["data.dataset=ml-100k", *TINY_UR4REC, "fusion.prior=ease", "fusion.method=fixed"]
    cfg = load_config(Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml",
                      overrides)  # fmt: skip
    model, split, _ = build(cfg, dataset)
    valid = Evaluator(dataset, split, "valid", "full")
    result = model.calibrate(valid, "ndcg@10", cfg.stages)
    assert result is not None
    weight, prior, metrics = (
        result.chosen["sasrec_weight"],
        result.chosen["prior_weight"],
        result.metrics,
    )
    assert weight in SASREC_GRID and prior in PRIOR_GRID
    assert model.fusion.prior_weight.item() == pytest.approx(prior)
    plain = valid.evaluate(model)
    assert metrics["ndcg@10"] == pytest.approx(plain["ndcg@10"])
    # No combination on the whole grid beats the chosen one, each scored by a plain evaluation.
    scores = {}
    for w in SASREC_GRID:
        for p in PRIOR_GRID:
            model.apply_calibration({"sasrec_weight": w, "prior_weight": p})
            scores[(w, p)] = valid.evaluate(model)["ndcg@10"]
    assert max(scores.values()) <= metrics["ndcg@10"] + 1e-12
    assert scores[(weight, prior)] == pytest.approx(metrics["ndcg@10"])


def train_tiny(out: Path, stages: str, *overrides: str) -> dict:
    """A tiny UR4Rec run on the cyclic ml-100k through the CLI, with its own stages; returns
    the printed summary."""
    import contextlib
    import io

    config = Path(__file__).parent.parent / "configs" / "ur4rec-ml-100k-liked.yaml"
    sets = [*(o for o in TINY_UR4REC if not o.startswith("stages=")), "data.dataset=ml-100k",
            stages, *overrides]  # fmt: skip
    argv = ["train", "--config", str(config), "--out", str(out), "--quiet", "--json"]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv + [x for o in sets for x in ("--set", o)]) == 0
    return json.loads(printed.getvalue())


def test_an_untrained_retriever_gets_no_fusion_weight(cyclic_folder: Path, tmp_path: Path) -> None:
    from ur4rec.models.ur4rec import PRIOR_GRID

    # SASRec and the EASE prior alone: a fused stage that trains only the fusion (lr 0) is
    # calibrated, but the retriever no stage trained is noise and must not get a share.
    prepare_dataset("ml-100k", source=cyclic_folder)
    stages = (
        "stages=[{name: pretrain_sasrec, epochs: 2, train: [sasrec], objective: sasrec},"
        " {name: calibrate, epochs: 1, train: [fusion], lr: {fusion: 0.0}}]"
    )
    summary = train_tiny(tmp_path / "run", stages, "fusion.prior=ease")
    assert summary["stages"][-1]["sasrec_weight"] == 1.0
    assert summary["stages"][-1]["prior_weight"] in PRIOR_GRID


def test_a_stage_that_cannot_beat_its_start_hands_the_start_on(
    cyclic_folder: Path, tmp_path: Path
) -> None:
    from ur4rec.runs.checkpoint import load_checkpoint

    prepare_dataset("ml-100k", source=cyclic_folder)
    # The second stage's learning rate is absurd: every epoch is worse than where it began.
    stages = (
        "stages=[{name: pretrain_sasrec, epochs: 3, train: [sasrec], objective: sasrec},"
        " {name: wreck, epochs: 2, train: [sasrec], objective: sasrec, lr: {sasrec: 50.0},"
        " clip: {sasrec: 1.0e+6}}]"
    )
    out = tmp_path / "run"
    summary = train_tiny(out, stages)
    first, second = summary["stages"]
    assert second["best_epoch"] == 0 and second["epochs_run"] == 2
    assert second["valid"] == first["valid"]
    kept = load_checkpoint(out / "stages" / "2-wreck" / "best.pt")["model"]
    start = load_checkpoint(out / "stages" / "1-pretrain_sasrec" / "best.pt")["model"]
    assert all(torch.equal(kept[k], start[k]) for k in start)
    table = json.loads((out / "stages.json").read_text())
    assert [r["epochs"] for r in table if r["protocol"] == "full"] == ["3/3", "2/2 (start kept)"]


@pytest.mark.parametrize("objective", ["sasrec", "retriever", "fused"])
def test_logit_adjustment_enters_every_training_softmax(objective: str) -> None:
    model = tiny_model()
    model.set_objective(objective)
    gen = torch.Generator()
    plain = model.training_loss(train_batch(), gen.manual_seed(0))
    counts = torch.arange(N_ITEMS) % 5 + 1
    model.train_bias = losses.popularity_bias(counts, 1.0)
    adjusted = model.training_loss(train_batch(), gen.manual_seed(0))
    assert torch.isfinite(adjusted) and adjusted.item() != pytest.approx(plain.item(), rel=1e-4)
    model.train_bias = None
    assert model.training_loss(train_batch(), gen.manual_seed(0)).item() == pytest.approx(
        plain.item(), rel=1e-6
    )
