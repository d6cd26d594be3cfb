"""Items that arrive after training: added to a run (model, service, CLI), scored from text,
persisted in the run's overlay."""

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import torch

from ur4rec.cli import main
from ur4rec.config import load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.prepare import prepare_dataset
from ur4rec.runs.load import load_run
from ur4rec.runs.overlay import (
    OVERLAY,
    ItemSpecError,
    NewItem,
    append_items,
    parse_item,
    read_overlay,
)
from ur4rec.serve.app import create_app
from ur4rec.serve.recommender import Recommender
from ur4rec.text.templates import item_text
from ur4rec.train import run

from .conftest import cyclic_ratings, write_ml100k
from .test_serve import _free_port, serving
from .test_trainer import TINY
from .test_ur4rec import TINY_UR4REC

CONFIGS = Path(__file__).parent.parent / "configs"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("items")
    genres = ("Drama", "Comedy", "Horror", "Western")
    titles = {i: (f"Film number {i} ({1950 + 3 * i})", genres[i % 4]) for i in range(1, 21)}
    folder = write_ml100k(root / "cyclic", ratings=cyclic_ratings(), titles=titles)
    data = str(root / "data")
    prepare_dataset("ml-100k", source=folder, root=data)
    cold = ["data.dataset=ml-100k", "data.scheme=cold-items"]
    configs = {
        "ur4rec": load_config(
            CONFIGS / "ur4rec-ml-100k-liked.yaml",
            [
                *cold,
                *TINY_UR4REC,
                "fusion.prior=ease",
                "model.id_residual=0.5",
                "fusion.cooccurrence=rp3beta",
            ],
        ),
        "text-knn": load_config(CONFIGS / "sasrec-ml-100k.yaml", [*TINY, "model.name=text-knn"]),
        "sasrec": load_config(CONFIGS / "sasrec-ml-100k.yaml", [*TINY, "train.epochs=1"]),
    }
    out = {
        name: run.train(cfg, root / name, data_dir=data, quiet=True)
        for name, cfg in configs.items()
    }
    out["data"] = Path(data)
    return out


def test_an_added_item_scores_as_an_untrained_item_with_its_text(runs) -> None:
    """The fused model scores an added item exactly as it scores an item that never occurred
    in training and has the same text, in every branch; trained items keep their scores."""
    _, dataset, model = load_run(runs["ur4rec"], str(runs["data"]))
    known = model.known
    cold = int(torch.nonzero(~known)[0])
    items = torch.tensor([[0, 1, 2, 3], [5, 6, cold, 7]])
    batch = HistoryBatch(torch.tensor([0, 1]), items)
    with torch.no_grad():
        before = model.scores_from_states(model.user_states(batch))
        model.add_items(model.item_text_vectors()[cold : cold + 1].clone())
        model.prepare_for_inference()
        after = model.scores_from_states(model.user_states(batch))
    n = dataset.n_items
    assert model.n_items == n + 1 and not bool(model.known[n])
    for branch in ("sasrec", "retriever", "prior", "cooccurrence", "score"):
        assert after[branch].shape == (2, n + 1)
        torch.testing.assert_close(after[branch][:, n], after[branch][:, cold])
    for branch in ("sasrec", "retriever", "prior", "cooccurrence"):
        torch.testing.assert_close(after[branch][:, :n], before[branch])
    assert bool(torch.isfinite(after["score"]).all())


def test_an_id_only_model_refuses_new_items(runs) -> None:
    recommender = Recommender(runs["sasrec"], str(runs["data"]))
    item = parse_item({"id": "new-1", "title": "New", "text": "A new film."})
    with pytest.raises(Exception, match="reads no item text"):
        recommender.add_items([item])
    assert not (runs["sasrec"] / OVERLAY).exists()


@pytest.mark.parametrize(
    ("obj", "problem"),
    [
        ({"id": "x", "title": "X", "text": "  "}, "'text' must be a non-empty string"),
        ({"id": "x", "title": "X"}, "'text'"),
        ({"id": "", "text": "t"}, "'id'"),
        ({"id": "x", "text": "t", "rating": 5}, "unknown field"),
        ({"id": "x", "text": "t", "metadata": [1]}, "'metadata'"),
        ("not an object", "expected a JSON object"),
    ],
)
def test_bad_items_are_named(obj: object, problem: str) -> None:
    with pytest.raises(ItemSpecError, match=problem):
        parse_item(obj, "line 3")


def test_appending_reuses_the_callers_overlay_only_while_the_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ur4rec.runs import overlay as overlay_module

    encoder = "all-MiniLM-L6-v2"
    reads: list[Path] = []

    def counted(run_dir: Path, enc: str) -> object:
        reads.append(run_dir)
        return read_overlay(run_dir, enc)

    monkeypatch.setattr(overlay_module, "read_overlay", counted)

    def add(name: str, known: object = None) -> tuple:
        item = NewItem(name, name.upper(), f"text {name}")
        return append_items(tmp_path, [item], torch.ones(1, 4), encoder, set(), known)

    first = add("a")
    assert len(reads) == 1
    mine = add("b", first)  # the caller's own view, the file unchanged since: not read again
    assert [i.id for i in mine[0].items] == ["a", "b"] and len(reads) == 1
    add("c")  # another writer
    last = add("d", mine)  # a stale view: the file is read, nothing of the other writer lost
    assert len(reads) == 3
    assert [i.id for i in last[0].items] == ["a", "b", "c", "d"]
    assert [i.id for i in read_overlay(tmp_path, encoder).items] == ["a", "b", "c", "d"]
    assert len(read_overlay(tmp_path, encoder).vectors) == 4


@pytest.fixture
def served(runs) -> Iterator[tuple[str, Recommender]]:
    (runs["text-knn"] / OVERLAY).unlink(missing_ok=True)
    recommender = Recommender(runs["text-knn"], str(runs["data"]))
    with serving(create_app(recommender)) as url:
        yield url, recommender


def test_an_item_added_over_http_is_recommended_and_kept(served, runs) -> None:
    url, recommender = served
    dataset = recommender.dataset
    liked = dataset.item_ids[4]
    text = item_text(dataset.item_info[4])  # the text the run's own item has
    with httpx.Client(base_url=url) as client:
        before = client.post("/recommendations", json={"history": [liked], "k": 3}).json()
        assert "fresh-1" not in [r["item"] for r in before["items"]]
        added = client.post("/items", json={"id": "fresh-1", "title": "Fresh", "text": text})
        assert added.status_code == 201, added.text
        assert added.json() == {"item": "fresh-1", "items": 21}
        after = client.post("/recommendations", json={"history": [liked], "k": 3}).json()
        assert after["items"][0]["item"] == "fresh-1"
        assert after["items"][0]["title"] == "Fresh"
        # The new item can also be part of a history.
        client.post("/recommendations", json={"history": ["fresh-1"], "k": 3}).raise_for_status()
        assert client.get("/health").json()["items"] == 21

        again = client.post("/items", json={"id": "fresh-1", "text": "something else"})
        assert again.status_code == 409 and "fresh-1" in again.json()["detail"]
        trained = client.post("/items", json={"id": liked, "text": "a remake"})
        assert trained.status_code == 409
        for body in ({"id": "e", "text": ""}, {"id": "e", "text": "   "}, {"id": "e"}):
            refused = client.post("/items", json=body)
            assert refused.status_code == 422, body
            assert "Traceback" not in refused.text and "/" not in refused.json()["detail"][0]["msg"]
    # Kept beside the run: a restarted service has the item, with the same vector.
    overlay = read_overlay(runs["text-knn"], "all-MiniLM-L6-v2")
    assert [item.id for item in overlay.items] == ["fresh-1"]
    restarted = Recommender(runs["text-knn"], str(runs["data"]))
    assert restarted.dataset.n_items == 21
    top = restarted.recommend_history([liked], k=1).items[0]
    assert top.item == "fresh-1"


def test_items_added_by_the_cli_reach_a_running_service(served, runs, tmp_path, capsys) -> None:
    url, recommender = served
    dataset = recommender.dataset
    file = tmp_path / "items.jsonl"
    rows = [
        {"id": "cli-1", "title": "One", "text": item_text(dataset.item_info[7])},
        {"id": "cli-2", "title": "Two", "text": "A slow western.", "metadata": {"year": 2026}},
    ]
    file.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert main(["items", "add", str(runs["text-knn"]), "--file", str(file), "--json",
                 "--data-dir", str(runs["data"])]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out) == {"added": ["cli-1", "cli-2"], "items": 22}
    with httpx.Client(base_url=url) as client:  # the service sees the overlay change
        answer = client.post("/recommendations", json={"history": [dataset.item_ids[7]], "k": 1})
        assert answer.json()["items"][0]["item"] == "cli-1"
    assert main(["items", "list", str(runs["text-knn"])]) == 0
    assert "cli-2\tTwo" in capsys.readouterr().out

    # A second add of the same file: refused whole, nothing written.
    before = (runs["text-knn"] / OVERLAY).read_bytes()
    argv = ["items", "add", str(runs["text-knn"]), "--file", str(file), "--data-dir"]
    assert main([*argv, str(runs["data"])]) == 1
    assert "'cli-1' is already in the catalogue" in capsys.readouterr().err
    assert (runs["text-knn"] / OVERLAY).read_bytes() == before
    file.write_text('{"id": "ok", "text": "fine"}\n{"id": "bad", "text": ""}\n', encoding="utf-8")
    assert main([*argv, str(runs["data"])]) == 1
    assert "line 2" in capsys.readouterr().err
    file.write_text("{not json\n", encoding="utf-8")
    assert main([*argv, str(runs["data"])]) == 1
    assert "line 1: not JSON" in capsys.readouterr().err


def test_an_item_added_to_a_fused_run_is_served(runs) -> None:
    (runs["ur4rec"] / OVERLAY).unlink(missing_ok=True)
    recommender = Recommender(runs["ur4rec"], str(runs["data"]))
    n = recommender.dataset.n_items
    user = recommender.dataset.user_ids[0]
    item = parse_item(
        {"id": "late", "title": "Late", "text": item_text(recommender.dataset.item_info[3])}
    )
    recommender.add_items([item])
    model = recommender.model
    cached = (model.sasrec._item_cache, model.retriever._item_cache, model.retriever._history_cache)
    assert all(c is not None and len(c) == n + 1 for c in cached)  # extended, still cached
    model.sasrec.clear_item_cache()
    model.retriever.clear_item_cache()
    torch.testing.assert_close(model.sasrec.item_vectors(), cached[0])
    torch.testing.assert_close(model.retriever.item_vectors(), cached[1])
    torch.testing.assert_close(model.retriever.history_proj(model.retriever.item_text), cached[2])
    model.prepare_for_inference()
    everything = recommender.recommend_user(user, k=n + 1)
    late = [r for r in everything.items if r.item == "late"]
    assert late and set(late[0].scores) == {"sasrec", "retriever", "prior", "cooccurrence"}
    assert late[0].scores["prior"] == late[0].scores["cooccurrence"] == 0.0
    assert all(torch.isfinite(torch.tensor(r.score)) for r in everything.items)


# -- explanations in words (serve/explain.py), against a fake LLM on 127.0.0.1 -------------


def test_recommend_explain_llm_writes_sentences_and_caches_them(runs, capsys, monkeypatch) -> None:
    from .fake_llm import FakeLLM, ok, status

    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-explain")
    fake = FakeLLM(lambda prompt, attempt: ok("Because you liked a film much like it."))
    user = "1"
    argv = ["recommend", str(runs["ur4rec"]), "--user", user, "-k", "3", "--explain", "llm",
            "--llm-base-url", fake.url, "--llm-model", "fake", "--json",
            "--data-dir", str(runs["data"])]  # fmt: skip
    try:
        assert main(argv) == 0
        out = json.loads(capsys.readouterr().out)
        sentences = [r["explanation"]["sentence"] for r in out["items"]]
        assert sentences == ["Because you liked a film much like it."] * 3
        prompts = list(fake.attempts)
        assert len(prompts) == 3 and all("Nearest item in the user's history" in p for p in prompts)
        for rec in out["items"]:  # each prompt names its item
            assert any(f"Recommended: {rec['title']}" in p for p in prompts)
        asked = fake.requests
        assert main(argv) == 0  # the same evidence again: answered from the cache
        capsys.readouterr()
        assert fake.requests == asked
        assert set(fake.auth_headers) == {"Bearer sk-test-explain"}
    finally:
        fake.close()

    down = FakeLLM(lambda prompt, attempt: status(500))
    try:
        argv[argv.index("-k") + 1] = "4"  # new evidence: not cached
        argv[argv.index("--llm-base-url") + 1] = down.url
        assert main(argv) == 0  # a dead backend costs the sentences, not the answer
        out = json.loads(capsys.readouterr().out)
        assert all(r["explanation"]["sentence"] is None for r in out["items"])
        assert all(r["explanation"]["history_item"] for r in out["items"])
        assert any("could not be written by the LLM" in n for n in out["notes"])
        assert "sk-test-explain" not in json.dumps(out)
    finally:
        down.close()
    assert main([*argv[: argv.index("--llm-model")], "--json"]) == 1
    assert "--explain llm needs --llm-model" in capsys.readouterr().err


def test_http_explain_llm(runs, tmp_path) -> None:
    from fastapi.testclient import TestClient

    from ur4rec.serve.explain import explainer_from_spec

    from .fake_llm import FakeLLM, ok

    fake = FakeLLM(lambda prompt, attempt: ok("It shares the mood of what you watched."))
    spec = {"base_url": fake.url, "model": "fake", "cache": str(tmp_path / "llm-cache")}
    recommender = Recommender(runs["ur4rec"], str(runs["data"]))
    apps = {"llm": create_app(recommender, explainer=explainer_from_spec(spec)),
            "none": create_app(recommender)}  # fmt: skip
    try:
        for name, app in apps.items():
            with TestClient(app) as c:
                got = c.get("/users/1/recommendations", params={"k": 2, "explain": "llm"})
                assert got.status_code == 200, got.text
                posted = c.post("/recommendations", json={"history": ["1", "2"], "k": 2,
                                                          "explain": "llm"})  # fmt: skip
                assert posted.status_code == 200, posted.text
                for answer in (got.json(), posted.json()):
                    sentences = [r["explanation"]["sentence"] for r in answer["items"]]
                    if name == "llm":
                        assert sentences == ["It shares the mood of what you watched."] * 2
                    else:
                        assert sentences == [None, None]
                        assert any("no LLM backend" in n for n in answer["notes"])
                bad = c.get("/users/1/recommendations", params={"explain": "maybe"})
                assert bad.status_code == 422
    finally:
        fake.close()


def test_every_worker_process_serves_an_item_added_through_one(runs) -> None:
    import subprocess
    import sys

    (runs["text-knn"] / OVERLAY).unlink(missing_ok=True)
    port = _free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(runs["text-knn"]), "--port", str(port),
           "--workers", "2", "--data-dir", str(runs["data"])]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.stderr.read()
            try:
                httpx.get(f"{url}/health", timeout=1).raise_for_status()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        recommender = Recommender(runs["text-knn"], str(runs["data"]))
        liked = recommender.dataset.item_ids[9]
        text = item_text(recommender.dataset.item_info[9])
        added = httpx.post(f"{url}/items", json={"id": "shared-1", "text": text})
        assert added.status_code == 201, added.text
        from concurrent.futures import ThreadPoolExecutor

        def top(_: int) -> str:  # a new connection each time
            answer = httpx.post(f"{url}/recommendations", json={"history": [liked], "k": 1})
            return answer.json()["items"][0]["item"]

        with ThreadPoolExecutor(8) as pool:  # concurrent, so that both workers answer some
            assert set(pool.map(top, range(48))) == {"shared-1"}
        again = httpx.post(f"{url}/items", json={"id": "shared-1", "text": text})
        assert again.status_code == 409  # whichever worker answers knows it
    finally:
        server.terminate()
        server.wait(timeout=30)
        (runs["text-knn"] / OVERLAY).unlink(missing_ok=True)
