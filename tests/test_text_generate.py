import json
from pathlib import Path

import pytest

from tests.fake_llm import FakeLLM, ok, refusal, status
from ur4rec.cli import main
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import prepare_dataset
from ur4rec.data.splits import make_split, targets
from ur4rec.errors import Ur4recError
from ur4rec.text.generate import ResponseCache, build_jobs, generate
from ur4rec.text.llm import ChatClient, LLMError


def client(fake: FakeLLM, **kw) -> ChatClient:
    defaults = {"timeout": 0.5, "max_retries": 2, "backoff": 0.01, "max_backoff": 0.05}
    return ChatClient(base_url=fake.url, model="fake-1", **{**defaults, **kw})


@pytest.fixture
def fake_factory():
    servers = []

    def make(script):
        server = FakeLLM(script)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def test_good_answers_cached_and_rerun_free(tiny: Dataset, tmp_path: Path, fake_factory) -> None:
    fake = fake_factory(lambda prompt, attempt: ok(f"text {len(prompt)}"))
    cache = ResponseCache(tmp_path / "cache")
    jobs = build_jobs(tiny, "items")
    result = generate(jobs, client(fake), cache, concurrency=3, quiet=True)
    assert set(result.status.values()) == {"llm"} and fake.requests == len(jobs)
    assert result.usage["total_tokens"] == 20 * len(jobs)
    assert list(result.texts) == tiny.item_ids  # dataset order, whatever the finishing order
    again = generate(jobs, client(fake), cache, quiet=True)
    assert fake.requests == len(jobs)  # nothing asked twice
    assert again.texts == result.texts and set(again.status.values()) == {"cached"}
    # A change of model parameters is a different cache key.
    generate(jobs, client(fake, temperature=0.1), cache, quiet=True)
    assert fake.requests == 2 * len(jobs)


def test_retries_on_429_and_500(tiny: Dataset, tmp_path: Path, fake_factory) -> None:
    def script(prompt, attempt):
        if attempt == 0:
            return status(429, {"Retry-After": "0"})
        if attempt == 1:
            return status(503)
        return ok("fine")

    fake = fake_factory(script)
    result = generate(build_jobs(tiny, "users"), client(fake), ResponseCache(tmp_path), quiet=True)
    assert set(result.status.values()) == {"llm"}
    assert fake.requests == 3 * len(result.texts)


def test_slow_and_malformed_answers_fall_back_and_are_retried_next_run(
    tiny: Dataset, tmp_path: Path, fake_factory
) -> None:
    jobs = build_jobs(tiny, "items")
    slow_prompt, bad_prompt = jobs[0].prompt, jobs[1].prompt

    healed = {"now": False}

    def script(prompt, attempt):
        if healed["now"]:
            return ok("now fine")
        if prompt == slow_prompt:
            return 200, ok("late")[1], 1.0, {}
        if prompt == bad_prompt:
            return 200, b"{not json", 0.0, {}
        return ok("fine")

    fake = fake_factory(script)
    cache = ResponseCache(tmp_path)
    result = generate(jobs, client(fake, max_retries=1), cache, quiet=True)
    assert result.status[jobs[0].raw_id].startswith("fallback: failed")
    assert "no answer within" in result.status[jobs[0].raw_id]
    assert "unreadable answer" in result.status[jobs[1].raw_id]
    assert result.texts[jobs[0].raw_id] == jobs[0].fallback  # the template text
    assert fake.attempts[slow_prompt] == 2 and fake.attempts[bad_prompt] == 2
    healed["now"], before = True, fake.requests
    rerun = generate(jobs, client(fake), cache, quiet=True)
    assert fake.requests - before == 2  # only the two failures are asked again
    assert rerun.status[jobs[0].raw_id] == "llm"


def test_refusal_is_a_flagged_fallback(tiny: Dataset, tmp_path: Path, fake_factory) -> None:
    jobs = build_jobs(tiny, "items")
    fake = fake_factory(
        lambda p, a: (
            refusal() if p == jobs[2].prompt else ok("   ") if p == jobs[3].prompt else ok("x")
        )
    )
    cache = ResponseCache(tmp_path)
    result = generate(jobs, client(fake), cache, quiet=True)
    assert result.status[jobs[2].raw_id] == "fallback: refused: I can't help with that."
    assert result.status[jobs[3].raw_id] == "fallback: refused: empty answer"
    generate(jobs, client(fake), cache, quiet=True)
    assert fake.requests == len(jobs)  # a refusal is an answer: not asked again


def test_interrupted_run_resumes(tiny: Dataset, tmp_path: Path, fake_factory, monkeypatch) -> None:
    fake = fake_factory(lambda p, a: ok("x"))
    jobs = build_jobs(tiny, "items")
    cache = ResponseCache(tmp_path)
    c = client(fake)
    real = ChatClient.complete
    calls = {"n": 0}

    def dying(self, prompt):
        calls["n"] += 1
        if calls["n"] > 3:
            raise KeyboardInterrupt
        return real(self, prompt)

    monkeypatch.setattr(ChatClient, "complete", dying)
    with pytest.raises(KeyboardInterrupt):
        generate(jobs, c, cache, concurrency=1, quiet=True)
    monkeypatch.setattr(ChatClient, "complete", real)
    result = generate(jobs, c, cache, quiet=True)
    assert fake.requests == len(jobs)  # 3 before the kill + the rest after it
    assert sorted(result.status.values()).count("cached") == 3


def test_non_retryable_error_and_api_key(
    tiny: Dataset, tmp_path: Path, fake_factory, monkeypatch
) -> None:
    jobs = build_jobs(tiny, "items")[:2]
    fake = fake_factory(lambda p, a: status(401) if p == jobs[0].prompt else ok("x"))
    monkeypatch.setenv("MY_KEY", "sk-secret-123")
    c = client(fake, api_key_env="MY_KEY")
    result = generate(jobs, c, ResponseCache(tmp_path), concurrency=1, quiet=True)
    assert fake.attempts[jobs[0].prompt] == 1  # 401 is not retried
    assert fake.auth_headers == ["Bearer sk-secret-123"] * 2
    assert "HTTP 401" in result.status[jobs[0].raw_id] and result.status[jobs[1].raw_id] == "llm"
    assert "sk-secret" not in json.dumps(result.status)


def test_dead_endpoint_is_an_error(tiny: Dataset, tmp_path: Path, fake_factory) -> None:
    fake = fake_factory(lambda p, a: status(401))
    with pytest.raises(LLMError, match="every request failed; the first: .*HTTP 401"):
        generate(build_jobs(tiny, "items"), client(fake), ResponseCache(tmp_path), quiet=True)
    dead = ChatClient(base_url="http://127.0.0.1:9/v1", model="m", max_retries=0)
    with pytest.raises(LLMError, match="cannot reach"):
        generate(build_jobs(tiny, "items"), dead, ResponseCache(tmp_path), quiet=True)


def test_cli_openai_backend_end_to_end(
    tiny_folder: Path, tmp_path: Path, fake_factory, monkeypatch, capsys
) -> None:
    prepare_dataset("ml-100k", source=tiny_folder)
    fake = fake_factory(lambda p, a: ok("A thoughtful viewer."))
    monkeypatch.setenv("OPENAI_API_KEY", "sk-never-written")
    out = tmp_path / "users.json"
    argv = ["texts", "generate", "--dataset", "ml-100k", "--kind", "users", "--backend", "openai",
            "--base-url", fake.url, "--model", "fake-1", "--out", str(out), "--json"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads(capsys.readouterr().out)
    assert manifest["status_counts"] == {"llm": 4} and manifest["usage"]["total_tokens"] == 80
    assert manifest["split"] == "leave-one-out" and manifest["history"] == "training part only"
    assert json.loads(out.read_text()) == dict.fromkeys(
        ["1", "2", "3", "4"], "A thoughtful viewer."
    )
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert "sk-never-written" not in path.read_text(errors="ignore")
    # Without --model the openai backend refuses to guess.
    assert main([*argv[:8], "--base-url", fake.url]) == 1
    assert "needs --model" in capsys.readouterr().err


def test_cli_template_texts(tiny_folder: Path, tmp_path: Path, capsys) -> None:
    prepare_dataset("ml-100k", source=tiny_folder)
    assert main(["texts", "generate", "--dataset", "ml-100k", "--kind", "items", "--json"]) == 0
    manifest = json.loads(capsys.readouterr().out)
    texts = json.loads(Path(manifest["path"]).read_text())
    assert texts["11"] == "The Usual Suspects (1995): a crime film from 1995. A 1990s film."
    assert manifest["backend"] == "template" and manifest["status_counts"] == {"template": 6}


def test_no_held_out_item_reaches_a_prompt(tiny: Dataset) -> None:
    split = make_split(tiny)
    held_out = {
        int(u): {int(t) for t in ts}
        for u, *ts in zip(
            split.test.users, targets(tiny, split.valid), targets(tiny, split.test), strict=True
        )
    }
    jobs = {job.raw_id: job for job in build_jobs(tiny, "users")}
    for user, items in held_out.items():
        seen = set(tiny.sequence(user)[: split.train.lengths[user]].tolist())
        job = jobs[tiny.user_ids[user]]
        for item in items - seen:
            title = tiny.item_info[item].title.split(",")[0]
            assert title not in job.prompt and title not in job.fallback


def test_unknown_kind() -> None:
    with pytest.raises((ValueError, Ur4recError)):
        build_jobs(None, "films")  # type: ignore[arg-type]


def test_real_user_prompts_hold_no_held_out_title() -> None:
    """On ml-100k-liked, no user's prompt or template text names their validation or test
    item, unless a training item carries the same title (MovieLens lists a few films twice)."""
    from ur4rec.data.sources import recbole_folder
    from ur4rec.text.audit import mentions, normalise, title_forms

    if recbole_folder() is None:
        pytest.skip("recbole not installed")
    from ur4rec.data.prepare import open_dataset

    data = open_dataset("ml-100k-liked")
    split = make_split(data)
    jobs = {job.raw_id: job for job in build_jobs(data, "users")}
    held = zip(split.test.users, targets(data, split.valid), targets(data, split.test), strict=True)
    checked = 0
    for user, *items in held:
        job = jobs[data.user_ids[user]]
        train_titles = " ".join(
            normalise(data.item_info[i].title)
            for i in data.sequence(user)[: split.train.lengths[user]]
        )
        for item in items:
            info = data.item_info[int(item)]
            if any(form in train_titles for form in title_forms(info)):
                continue
            assert not mentions(job.prompt, info) and not mentions(job.fallback, info)
            checked += 1
    assert checked > 1800


def test_title_free_user_template(tiny: Dataset) -> None:
    from ur4rec.text.corpus import template_texts

    with_titles = template_texts(tiny, "users")
    aspects = template_texts(tiny, "users", titles=False)
    assert "Usual Suspects" in with_titles["1"]
    for text in aspects.values():
        for info in tiny.item_info:
            assert info.title.split(",")[0] not in text
    assert "mostly" in aspects["1"] and "Rates" in aspects["1"]
