"""Recommend, explain and serve: a tiny UR4Rec run and a tiny SASRec run, queried through the
CLI and through a real HTTP server on 127.0.0.1."""

import contextlib
import json
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from ur4rec.cli import main
from ur4rec.config import load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.prepare import prepare_dataset
from ur4rec.errors import Ur4recError
from ur4rec.serve.app import RecommendationsOut, create_app
from ur4rec.serve.recommender import Recommender
from ur4rec.text.encoder import native_bfloat16
from ur4rec.train import run

from .conftest import cyclic_ratings, write_ml100k
from .test_trainer import TINY
from .test_ur4rec import TINY_UR4REC

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trained once for the module: {'ur4rec': RUN, 'sasrec': RUN, 'data': DATA_DIR}."""
    root = tmp_path_factory.mktemp("serve")
    titles = {i: (f"Movie {i} (19{70 + i})", "Drama" if i % 2 else "Comedy") for i in range(1, 21)}
    folder = write_ml100k(root / "cyclic", ratings=cyclic_ratings(), titles=titles)
    data = str(root / "data")
    prepare_dataset("ml-100k", source=folder, root=data)
    ur4rec_cfg = load_config(
        CONFIGS / "ur4rec-ml-100k-liked.yaml",
        # With the EASE prior and co-occurrence, so that serving covers every branch.
        [
            "data.dataset=ml-100k",
            *TINY_UR4REC,
            "fusion.prior=ease",
            "fusion.prior_weight=0.5",
            "fusion.cooccurrence=rp3beta",
        ],
    )
    sasrec_cfg = load_config(CONFIGS / "sasrec-ml-100k.yaml", [*TINY, "train.epochs=2"])
    return {
        "ur4rec": run.train(ur4rec_cfg, root / "ur4rec", data_dir=data, quiet=True),
        "sasrec": run.train(sasrec_cfg, root / "sasrec", data_dir=data, quiet=True),
        "data": Path(data),
    }


@pytest.fixture(scope="module")
def recommender(runs: dict[str, Path]) -> Recommender:
    return Recommender(runs["ur4rec"], str(runs["data"]))


def seen_by(recommender: Recommender, raw_user: str) -> set[str]:
    user = recommender.dataset.user_index(raw_user)
    return {recommender.dataset.item_ids[i] for i in recommender.dataset.sequence(user).tolist()}


@pytest.mark.parametrize("kind", ["ur4rec", "sasrec"])
def test_recommend_cli_excludes_seen_and_explains(runs, kind: str, capsys) -> None:
    data = str(runs["data"])
    argv = ["recommend", str(runs[kind]), "--user", "3", "-k", "5", "--json", "--data-dir", data]
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    recommender = Recommender(runs[kind], data)
    seen = seen_by(recommender, "3")
    items = [r["item"] for r in out["items"]]
    assert len(items) == 5 and len(set(items)) == 5 and not seen & set(items)
    assert [r["rank"] for r in out["items"]] == [1, 2, 3, 4, 5]
    scores = [r["score"] for r in out["items"]]
    assert scores == sorted(scores, reverse=True)
    for rec in out["items"]:
        assert rec["title"].startswith("Movie ")
        # The nearest history item is one of the user's own items.
        assert rec["explanation"]["history_item"]["item"] in seen
    if kind == "ur4rec":
        assert set(out["items"][0]["scores"]) == {"sasrec", "retriever", "prior", "cooccurrence"}
        assert out["prior_weight"] is not None
        assert set(out["cooccurrence_weights"]) == {
            "cooccurrence_weight",
            "rare_weight",
            "rare_bonus",
        }
        assert len(out["router"]) == 2 and abs(sum(out["router"]) - 1) < 1e-3
        sentence = out["items"][0]["explanation"]["preference_sentence"]
        assert sentence and sentence in out["preference_text"]
    else:
        assert set(out["items"][0]["scores"]) == {"sasrec"} and out["router"] is None
    # The plain-text form names the items and why.
    assert main([*argv[:-3], "--data-dir", data]) == 0
    text = capsys.readouterr().out
    assert out["items"][0]["title"] in text and "why:" in text
    assert ("EASE prior" in text) == (kind == "ur4rec")
    assert ("co-occurrence" in text) == (kind == "ur4rec")


def test_recommend_history_for_a_new_user(recommender: Recommender) -> None:
    history = ["1", "2", "3"]
    result = recommender.recommend_history(history, k=4, explain=True)
    items = [r.item for r in result.items]
    assert len(items) == 4 and not set(history) & set(items)
    assert result.user is None and result.notes  # a template text was written for them
    assert all(r.explanation.history_item.item in history for r in result.items)
    given = recommender.recommend_history(history, k=4, preference_text="Loves comedies.")
    assert given.preference_text == "Loves comedies." and not given.notes


def test_recommend_cli_errors(runs, capsys) -> None:
    data = str(runs["data"])
    assert main(["recommend", str(runs["ur4rec"]), "--user", "nobody", "--data-dir", data]) == 1
    assert "unknown user id 'nobody'" in capsys.readouterr().err
    argv = ["recommend", str(runs["ur4rec"]), "--history", "1,999", "--data-dir", data]
    assert main(argv) == 1
    assert "unknown item id(s) '999'" in capsys.readouterr().err
    assert main(["recommend", str(runs["ur4rec"]), "--data-dir", data]) == 1
    assert "exactly one of --user" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serving(app: Any) -> Iterator[str]:
    """``app`` served by uvicorn in a thread on a free loopback port: its base URL."""
    port = _free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
    instance = uvicorn.Server(config)
    thread = threading.Thread(target=instance.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not instance.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        instance.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="module")
def server(recommender: Recommender) -> Iterator[str]:
    with serving(create_app(recommender, max_body_bytes=4096)) as url:
        yield url


def test_http_health_and_openapi(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        health = client.get("/health").json()
        assert health["status"] == "ok" and health["model"] == "ur4rec" and health["items"] == 20
        paths = client.get("/openapi.json").json()["paths"]
        assert {"/health", "/users/{raw_id}/recommendations", "/recommendations"} <= set(paths)


def test_http_recommendations_for_a_known_user(server: str, recommender: Recommender) -> None:
    with httpx.Client(base_url=server) as client:
        response = client.get("/users/7/recommendations", params={"k": 3})
        assert response.status_code == 200
        body = response.json()
        items = [r["item"] for r in body["items"]]
        assert (
            body["user"] == "7" and len(items) == 3 and not seen_by(recommender, "7") & set(items)
        )
        assert body["items"][0]["explanation"] is None
        # The fusion weights it was scored with, as the model holds them.
        described = recommender.model.describe()
        assert body["prior_weight"] == described["prior_weight"]
        assert body["cooccurrence_weights"] == {
            k: described[k] for k in ("cooccurrence_weight", "rare_weight", "rare_bonus")
        }
        explained = client.get("/users/7/recommendations?k=2&explain=true").json()
        assert explained["items"][0]["explanation"]["history_item"]["item"] in seen_by(
            recommender, "7"
        )
        # The body is rendered without FastAPI's validation: it must still fit the schema.
        RecommendationsOut.model_validate(body)
        RecommendationsOut.model_validate(explained)
        # The same answer as the library gives.
        assert items == [r.item for r in recommender.recommend_user("7", 3).items]


def test_http_errors(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        missing = client.get("/users/nobody/recommendations")
        assert missing.status_code == 404 and "unknown user id 'nobody'" in missing.json()["detail"]
        for k in ("0", "1001", "ten"):
            assert client.get(f"/users/7/recommendations?k={k}").status_code == 422
        bad_json = client.post(
            "/recommendations", content=b"{not json", headers={"content-type": "application/json"}
        )
        assert bad_json.status_code == 422
        assert client.post("/recommendations", json={"history": []}).status_code == 422
        assert client.post("/recommendations", json={"items": ["1"]}).status_code == 422
        assert client.post("/recommendations", json={"history": ["1"], "k": 0}).status_code == 422
        unknown = client.post("/recommendations", json={"history": ["1", "999"]})
        assert unknown.status_code == 404 and "'999'" in unknown.json()["detail"]
        huge = client.post("/recommendations", json={"history": ["1"] * 3000})
        assert huge.status_code == 413
        # A streamed (chunked) body over the limit is refused too.
        chunks = (b'{"history": [' + b'"1",' * 1200 + b'"1"]}',)
        streamed = client.post(
            "/recommendations", content=iter(chunks), headers={"content-type": "application/json"}
        )
        assert streamed.status_code == 413


def test_http_new_user_history(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        body = {
            "history": [1, "2", "3"],
            "preference_text": "Loves comedies.",
            "k": 5,
            "explain": True,
        }
        response = client.post("/recommendations", json=body)
        assert response.status_code == 200
        out = response.json()
        items = [r["item"] for r in out["items"]]
        assert out["user"] is None and len(items) == 5 and not {"1", "2", "3"} & set(items)
        assert out["preference_text"] == "Loves comedies."
        assert out["items"][0]["explanation"]["preference_sentence"] == "Loves comedies."
        assert out["items"][0]["explanation"]["history_item"]["item"] in {"1", "2", "3"}


@pytest.mark.parametrize("kind", ["ur4rec", "sasrec"])
def test_report_renders_from_a_tiny_run(runs, kind: str, capsys) -> None:
    run_dir = runs[kind]
    # A quality-benchmark results file beside the run is picked up as the ablation table.
    rows = [
        {"variant": "default", "seed": s, "dataset": "ml-100k", "fused full test ndcg@10": v}
        for s, v in ((1, 0.25), (2, 0.35))
    ]
    (run_dir.parent / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert main(["report", str(run_dir), "--data-dir", str(runs["data"])]) == 0
    assert "REPORT.md" in capsys.readouterr().out
    report = (run_dir / "REPORT.md").read_text()
    for section in ("## Results on the test split", "## Curves", "## Ablation", "## Data",
                    "## Texts and leakage audit", "## Configuration"):  # fmt: skip
        assert section in report
    assert (run_dir / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The run's own test figure (full protocol) is measured again and matches its summary.
    summary = json.loads((run_dir / "summary.json").read_text())
    row = next(
        line for line in report.splitlines() if line.startswith(f"| this run ({kind}) | full")
    )
    assert f"| {summary['test']['hit@10']:.4f} | {summary['test']['ndcg@10']:.4f} |" in row
    assert "| pop | full |" in report and "| ease (lambda " in report
    assert "| ease-recent (lambda " in report
    assert (
        "protocol `sampled-with-history:99` not measured" in report
    )  # 20 items: no room for 99 negatives
    assert "| default | 2 |" in report and "0.3000" in report  # mean of the two seeds
    if kind == "ur4rec":
        assert "## Stages" in report and "pretrain_retriever" in report
        assert "no leakage found" in report
        assert "A third branch that never trains, EASE" in report
        assert "Weight of the EASE prior:" in report
        assert (
            "Weights of the co-occurrence branch (every item / rare items / rare bonus):" in report
        )
        assert (run_dir / "stages.png").is_file()
    else:
        assert "## Training" in report and "reads no texts" in report


def test_report_needs_a_finished_run(tmp_path: Path, capsys) -> None:
    assert main(["report", str(tmp_path)]) == 1
    assert "no finished run" in capsys.readouterr().err


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_command_answers_over_http(runs, workers: str) -> None:
    port = _free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(runs["ur4rec"]), "--port", str(port),
           "--workers", workers, "--data-dir", str(runs["data"])]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        assert health.json()["model"] == "ur4rec"
        # `serve`'s defaults (precision and runtime auto): bfloat16 in PyTorch where the CPU
        # has it natively, otherwise float32 in ONNX Runtime.
        expected = "torch bfloat16" if native_bfloat16() else "onnx float32"
        assert health.json()["encoder"] == expected
        answer = httpx.get(f"http://127.0.0.1:{port}/users/3/recommendations?k=2").json()
        assert len(answer["items"]) == 2
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_serve_refuses_a_folder_that_is_not_a_run(tmp_path: Path, capsys) -> None:
    assert main(["serve", str(tmp_path)]) == 1
    assert "is not a run folder" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["ur4rec", "sasrec"])
def test_precomputed_user_states_give_the_models_own_ranking(runs, kind: str) -> None:
    recommender = Recommender(runs[kind], str(runs["data"]))
    users = ["1", "2", "3", "17"]
    fast = recommender.recommend_users(users, k=6)
    states, recommender._known_states = recommender._known_states, None
    try:
        slow = recommender.recommend_users(users, k=6)
    finally:
        recommender._known_states = states
    for a, b in zip(fast, slow, strict=True):
        assert [r.item for r in a.items] == [r.item for r in b.items]
        assert [r.scores for r in a.items] == [r.scores for r in b.items]
        assert a.router == b.router
    # And both are the model's own scores of the whole history, seen items left out.
    model, dataset = recommender.model, recommender.dataset
    user = dataset.user_index("3")
    history = dataset.sequence(user).tolist()[-recommender.max_len :]
    scores = model.score(HistoryBatch(torch.tensor([user]), torch.tensor([history])))[0]
    scores[torch.tensor(sorted(set(dataset.sequence(user).tolist())))] = float("-inf")
    expected = [dataset.item_ids[i] for i in scores.topk(6).indices.tolist()]
    assert [r.item for r in fast[2].items] == expected


# -- issue 12: hostile input, bounded memory, a responsive loop, offline docs ---------------
def test_http_hostile_and_careless_bodies(server: str) -> None:
    with httpx.Client(base_url=server) as client:
        surrogate = b'{"history": ["1"], "preference_text": "bad \\ud800 text"}'
        response = client.post(
            "/recommendations", content=surrogate, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422 and "preference_text" in response.text
        for body in (
            {"history": [True]},  # not item "1"
            {"history": ["1"], "k": "5"},
            {"history": ["1"], "k": 2.0},
            {"history": ["1"], "explain": "yes"},
            {"history": ["1"], "colour": "blue"},
            {"history": [["1"]]},
        ):
            assert client.post("/recommendations", json=body).status_code == 422, body
        surrogate_id = b'{"history": ["\\udfff"]}'
        response = client.post(
            "/recommendations", content=surrogate_id, headers={"content-type": "application/json"}
        )
        assert response.status_code == 422
        head = client.head("/health")
        assert head.status_code == 200 and head.content == b""
        for response in (client.get("/users/%ED%A0%80/recommendations"),):
            assert response.status_code == 404 and "Traceback" not in response.text


def test_docs_work_offline(server: str) -> None:
    """/docs references only assets the app serves itself (no CDN)."""
    import re

    with httpx.Client(base_url=server) as client:
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        refs = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
        refs += re.findall(r"""url: ?["']([^"']+)["']""", page.text)
        assert len(refs) >= 3, refs
        for ref in refs:
            assert not ref.startswith(("http:", "https:", "//")), f"{ref} is not served locally"
            assert client.get(ref).status_code == 200, ref


def test_sentence_vectors_are_bounded(runs) -> None:
    recommender = Recommender(runs["ur4rec"], str(runs["data"]), cache_size=8)
    for i in range(30):
        text = f"Likes film number {i}. Also enjoys sequel {i}."
        recommender.recommend_history(["1", "2"], 3, text, explain=True)
        assert len(recommender._sentence_cache) <= 8
    assert len(recommender._encoder.store) == 0  # the encoder keeps no copy of its own
    # Template texts of new histories are cached too, within the same bound.
    before = recommender.recommend_history(["4", "5", "6"], 5)
    again = recommender.recommend_history(["4", "5", "6"], 5)
    assert [r.item for r in before.items] == [r.item for r in again.items]


def test_health_answers_while_the_model_is_busy(
    server: str, recommender: Recommender, monkeypatch
) -> None:
    original = recommender.recommend_histories

    def slow(queries):
        time.sleep(1.5)  # a long scoring call, e.g. a big batch of new texts
        return original(queries)

    monkeypatch.setattr(recommender, "recommend_histories", slow)
    with httpx.Client(base_url=server, timeout=30) as client:
        done: list[int] = []
        thread = threading.Thread(
            target=lambda: done.append(
                client.post("/recommendations", json={"history": ["1"]}).status_code
            )
        )
        thread.start()
        time.sleep(0.3)  # the POST is being scored now
        start = time.perf_counter()
        assert client.get("/health").status_code == 200
        waited = time.perf_counter() - start
        thread.join()
    assert done == [200]
    assert waited < 0.5  # it used to wait for the scoring to finish


def test_encoder_loaded_at_start_when_asked(runs) -> None:
    recommender = Recommender(
        runs["ur4rec"], str(runs["data"]), preload_encoder=True, encoder_runtime="auto"
    )
    assert recommender._encoder is not None and recommender._encoder._model is not None
    assert recommender.encoder_description == "onnx float32"  # auto, where installed
    with TestClient(create_app(recommender)) as client:
        assert client.get("/health").json()["encoder"] == "onnx float32"
    torch_only = Recommender(runs["ur4rec"], str(runs["data"]), preload_encoder=True)
    assert torch_only.encoder_description == "torch float32"  # a library user's default
    text = "A gentle comedy about a family road trip."
    np.testing.assert_allclose(
        recommender._encode([text]).numpy(), torch_only._encode([text]).numpy(), atol=1e-5
    )
    with pytest.raises(Ur4recError, match="unknown encoder runtime"):
        Recommender(runs["ur4rec"], str(runs["data"]), encoder_runtime="gpu")
    sasrec = Recommender(runs["sasrec"], str(runs["data"]), preload_encoder=True)
    with TestClient(create_app(sasrec)) as client:
        assert client.get("/health").json()["encoder"] is None  # no text to encode


def test_ann_index_search_and_growth() -> None:
    from ur4rec.serve.index import ANNIndex

    gen = torch.Generator().manual_seed(0)
    items = torch.randn(5000, 16, generator=gen)
    queries = torch.randn(20, 16, generator=gen)
    exact = (queries @ items.T).topk(10, dim=1).indices
    every = ANNIndex(items, lists=50, probe=50)  # every list searched: exact
    assert torch.equal(every.search(queries, 10).sort(1).values, exact.sort(1).values)
    some = ANNIndex(items, lists=50, probe=10)
    found = some.search(queries, 10)
    recall = (
        sum(len(set(a.tolist()) & set(b.tolist())) for a, b in zip(found, exact, strict=True)) / 200
    )
    assert 0.5 < recall <= 1.0  # approximate, but far from chance (10/5000)
    assert every.memory_bytes >= 5000 * 16 * 4
    best = torch.full((1, 16), 10.0)  # an item that beats every other for this query
    every.add(best)
    assert every.size == 5001 and every.search(best, 1).item() == 5000


def test_serving_with_the_ann_index_matches_exact_serving(runs: dict[str, Path]) -> None:
    exact = Recommender(runs["sasrec"], str(runs["data"]))
    ann = Recommender(runs["sasrec"], str(runs["data"]), index="ann", candidates=5)
    assert ann.indexes is not None and set(ann.indexes) == {"sasrec"}
    users = exact.dataset.user_ids
    pairs = zip(exact.recommend_users(users, k=5), ann.recommend_users(users, k=5), strict=True)
    for a, b in pairs:
        assert [r.item for r in a.items] == [r.item for r in b.items]
        assert [r.score for r in a.items] == pytest.approx([r.score for r in b.items], abs=1e-3)
        assert b.items[0].scores.keys() == {"sasrec"}
    history = exact.recommend_history(["1", "2", "3"], k=4)
    assert [r.item for r in ann.recommend_history(["1", "2", "3"], k=4).items] == [
        r.item for r in history.items
    ]
    # More than the catalogue's unseen items: all of them, none seen.
    many = ann.recommend_user(users[0], k=100)
    assert len(many.items) == exact.dataset.n_items - len(seen_by(exact, users[0]))
    # UR4Rec: the fused score of candidates from the branch vectors' moments (and the EASE
    # prior computed whole) is the exact one.
    exact = Recommender(runs["ur4rec"], str(runs["data"]))
    ann = Recommender(runs["ur4rec"], str(runs["data"]), index="ann", candidates=5)
    assert set(ann.indexes or {}) == {"sasrec", "retriever"}
    for r in (exact, ann):  # whatever validation chose: the co-occurrence terms count too
        r.model.apply_calibration(
            {"cooccurrence_weight": 0.3, "rare_weight": 0.35, "rare_bonus": 0.3}
        )
    users = exact.dataset.user_ids
    pairs = zip(exact.recommend_users(users, k=5), ann.recommend_users(users, k=5), strict=True)
    for a, b in pairs:
        assert [r.item for r in a.items] == [r.item for r in b.items]
        for x, y in zip(a.items, b.items, strict=True):
            assert x.score == pytest.approx(y.score, abs=2e-3)
            assert x.scores == pytest.approx(y.scores, abs=2e-3)
        assert a.sasrec_weight == pytest.approx(b.sasrec_weight, abs=1e-4)
    ann.model.reranker = torch.nn.Identity()  # a reranker reads each history: exact only
    with pytest.raises(Ur4recError, match="--index exact"):
        ann._build_indexes("ann", None)
    with pytest.raises(Ur4recError, match="index must be one of"):
        Recommender(runs["sasrec"], str(runs["data"]), index="hnsw")
