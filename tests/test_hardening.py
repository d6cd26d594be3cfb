"""Careless and hostile input outside the service: bad configs, damaged files, foreign run
folders, killed runs, odd raw data. Each test names the defect of issue 12 it covers."""

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import write_ml100k
from ur4rec.cli import main
from ur4rec.config import ConfigError, load_config
from ur4rec.data.dataset import DatasetSpec, load_dataset, preprocess
from ur4rec.data.prepare import open_dataset, prepare_dataset, prepared_folder
from ur4rec.data.raw import read_ml100k
from ur4rec.errors import DataError, Ur4recError
from ur4rec.runs.checkpoint import CheckpointError
from ur4rec.train import run
from ur4rec.train.trainer import Trainer, read_log

from .test_trainer import TINY

CONFIG = Path(__file__).parent.parent / "configs" / "sasrec-ml-100k.yaml"


@pytest.fixture
def prepared(cyclic_folder: Path) -> None:
    prepare_dataset("ml-100k", source=cyclic_folder)


# -- 1: every config value is range-checked before anything runs -----------------------------
@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("data.max_len=0", "data.max_len"),
        ("data.max_len=-1", "data.max_len"),
        ("train.batch_size=-5", "train.batch_size"),
        ("train.batch_size=0", "train.batch_size"),
        ("train.lr=-1", "train.lr"),
        ("train.lr=nan", "train.lr"),
        ("train.lr=.inf", "train.lr"),
        ("train.eval_every=0", "train.eval_every"),
        ("train.metric=auc", "train.metric"),
        ("train.metric=ndcg@7", "train.metric"),
        ("model.hidden=65", "model.hidden"),
        ("model.dropout=1.5", "model.dropout"),
        ("model.attn_dropout=-0.1", "model.attn_dropout"),
        ("train.eval_protocol=sampled:0", "train.eval_protocol"),
        (["retriever.router=topk", "retriever.top_k=9"], "retriever.top_k"),
        ("retriever.temperature=0", "retriever.temperature"),
        ("fusion.sasrec_weight=2", "fusion.sasrec_weight"),
        ("seed=-3", "seed"),
        ("stages=[{name: s, epochs: 0}]", "stages[0] (s).epochs"),
        ("stages=[{name: s, train: []}]", "stages[0] (s).train"),
    ],
)
def test_bad_config_values_are_refused_at_load(override: str | list[str], key: str) -> None:
    with pytest.raises(ConfigError, match=rf"^{__import__('re').escape(key)}: must be"):
        load_config(CONFIG, [override] if isinstance(override, str) else override)


def test_bad_config_never_starts_a_run(prepared, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    start = time.perf_counter()
    code = main(["train", "--config", str(CONFIG), "--set", "data.max_len=0", "--out", str(out)])
    assert code == 1 and time.perf_counter() - start < 10  # it used to loop forever
    assert "data.max_len: must be >= 1, got 0" in capsys.readouterr().err
    assert not out.exists()  # no half-made folder marked "running"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "model.name=transformer",
            "unknown model 'transformer'; known: ease, gru4rec, pop, rp3beta, sasrec, sasrec-content, text-knn, ur4rec",
        ),
        ("stages=[{name: s, train: [decoder]}]", "stages[0] (s).train: must name modules of"),
        ("stages=[{name: s, train: [sasrec], objective: fused}]", "stages[0] (s).objective"),
        ("model.name=ease", None),  # fine: a fitted model without stages
    ],
)
def test_model_and_stages_are_checked_against_the_registry(
    prepared, tmp_path: Path, override: str, message: str | None
) -> None:
    out = tmp_path / "run"
    # A staged config takes no train.epochs (each stage has its own); it is refused later.
    short = [] if override.startswith("stages=") else ["train.epochs=1"]
    cfg = load_config(CONFIG, [override, *short])
    if message is None:
        run.train(cfg, out, quiet=True)
        assert (out / "summary.json").is_file()
        return
    with pytest.raises(Ur4recError, match=__import__("re").escape(message)):
        run.train(cfg, out, quiet=True)
    assert not out.exists()  # refused before a run folder is made


def test_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\nseed: 1\n")
    start = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than"):
        load_config(bomb)
    assert time.perf_counter() - start < 5


# -- 5: checkpoints carry a digest, checked on load ---------------------------------------
def test_flipped_bytes_in_a_checkpoint_are_found(prepared, tmp_path: Path, capsys) -> None:
    out = run.train(load_config(None, [*TINY, "train.epochs=1"]), tmp_path / "r", quiet=True)
    assert (out / "best.pt.sha256").is_file() and (out / "last.pt.sha256").is_file()
    data = bytearray((out / "best.pt").read_bytes())
    for at in (len(data) // 2, len(data) // 2 + 7):  # two bytes inside the weights
        data[at] ^= 0x01
    (out / "best.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"best.pt is corrupt: its SHA-256"):
        run.evaluate(out)
    assert main(["evaluate", str(out)]) == 1
    assert "best.pt is corrupt" in capsys.readouterr().err


# -- 6: a folder that is not a run of this config is not overwritten ------------------------
def test_out_folder_with_other_files_is_refused(prepared, tmp_path: Path, capsys) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    (out / "log.jsonl").write_text('{"mine": 1}\n')
    argv = ["train", "--config", str(CONFIG), "--out", str(out), "--quiet"]
    argv += [x for o in [*TINY, "train.epochs=1"] for x in ("--set", o)]
    assert main(argv) == 1
    assert "is not empty and is not a run of this config" in capsys.readouterr().err
    assert (out / "log.jsonl").read_text() == '{"mine": 1}\n' and not (out / "best.pt").exists()
    assert main([*argv, "--force"]) == 0  # deliberately: run files replaced, others kept
    assert (out / "notes.txt").read_text() == "keep me"
    assert [r["epoch"] for r in read_log(out / "log.jsonl")] == [1]


def test_symlinked_log_is_not_followed(prepared, tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    outside = tmp_path / "outside.jsonl"
    outside.write_text("precious\n")

    def link_log(state) -> None:
        if state.epoch == 1:
            (tmp_path / "r" / "log.jsonl").unlink()
            (tmp_path / "r" / "log.jsonl").symlink_to(outside)

    with pytest.raises(Ur4recError, match="is a symlink"):
        run.train(cfg, tmp_path / "r", quiet=True, on_epoch_end=link_log)
    assert outside.read_text() == "precious\n"
    assert json.loads((tmp_path / "r" / "run.json").read_text())["status"] == "failed"


# -- 8: a run killed in its first epoch resumes from the start -----------------------------
def test_run_killed_in_first_epoch_resumes(prepared, tmp_path: Path, monkeypatch) -> None:
    cfg = load_config(None, [*TINY, "train.epochs=2"])
    whole = run.train(cfg, tmp_path / "whole", quiet=True)
    original = Trainer._train_epoch

    def killed(self, epoch, disabled):
        raise KeyboardInterrupt

    monkeypatch.setattr(Trainer, "_train_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        run.train(cfg, tmp_path / "part", quiet=True)
    assert not (tmp_path / "part" / "last.pt").exists()
    monkeypatch.setattr(Trainer, "_train_epoch", original)
    part = run.resume(tmp_path / "part", quiet=True)
    summary = json.loads((part / "summary.json").read_text())
    assert summary["test"] == json.loads((whole / "summary.json").read_text())["test"]
    assert json.loads((part / "run.json").read_text())["status"] == "finished"
    # Training into the same folder with the same config is the same as resuming.
    assert main(["train", "--resume", str(part)]) == 0


# -- 9: damaged or odd files give named errors, not tracebacks -----------------------------
def test_timestamp_out_of_range_is_named(tmp_path: Path) -> None:
    folder = write_ml100k(tmp_path / "bad")
    (folder / "u.data").write_text("1\t10\t5\t100\n1\t11\t4\t100000000000000000000\n")
    with pytest.raises(DataError, match=r"u.data:2: timestamp '1\d+' is out of range"):
        read_ml100k(folder)
    (folder / "u.data").write_text("1\t10\t5\tnan\n")
    with pytest.raises(DataError, match=r"u.data:1: column 'timestamp' should be int"):
        read_ml100k(folder)


def _damage(folder: Path, how: str) -> None:
    if how == "truncated npz":
        data = (folder / "interactions.npz").read_bytes()
        (folder / "interactions.npz").write_bytes(data[: len(data) // 2])
    elif how == "empty npz":
        (folder / "interactions.npz").write_bytes(b"")
    elif how == "manifest without name":
        manifest = json.loads((folder / "manifest.json").read_text())
        del manifest["name"]
        (folder / "manifest.json").write_text(json.dumps(manifest))
    elif how == "item without title":
        rows = json.loads((folder / "items.json").read_text())
        del rows[0]["title"]
        (folder / "items.json").write_text(json.dumps(rows))


@pytest.mark.parametrize(
    "how", ["truncated npz", "empty npz", "manifest without name", "item without title"]
)
def test_damaged_prepared_dataset_is_named(tiny_folder: Path, how: str) -> None:
    prepare_dataset("ml-100k", source=tiny_folder)
    folder = prepared_folder("ml-100k")
    _damage(folder, how)
    with pytest.raises(DataError, match="prepared dataset is unreadable"):
        load_dataset(folder)


def test_data_dir_that_is_a_file_or_unwritable(tiny_folder: Path, tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    argv = ["data", "prepare", "ml-100k", "--source", str(tiny_folder), "--data-dir", str(blocker)]
    assert main(argv) == 1
    assert "cannot write the prepared ml-100k" in capsys.readouterr().err


def test_out_on_an_unwritable_place(prepared, capsys) -> None:
    argv = ["train", "--config", str(CONFIG), "--out", "/sys/ur4rec-run", "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "cannot write the run folder /sys/ur4rec-run" in err and "Traceback" not in err


# -- 10: a damaged prepared dataset is rebuilt only from its own source --------------------
def test_damaged_dataset_rebuilt_from_its_own_source_only(tmp_path: Path) -> None:
    ten = [(u, 10 + (u + s) % 5, 4, 100 * u + s) for u in range(1, 11) for s in range(4)]
    source = write_ml100k(tmp_path / "ten-users", ratings=ten)
    original, _ = prepare_dataset("ml-100k", source=source)
    folder = prepared_folder("ml-100k")
    _damage(folder, "truncated npz")
    rebuilt = open_dataset("ml-100k")  # from the same folder: the same data
    assert rebuilt.n_users == 10 and rebuilt.content_hash == original.content_hash
    _damage(folder, "truncated npz")
    (source / "u.data").write_text((source / "u.data").read_text() + "11\t10\t4\t5\n")
    with pytest.raises(DataError, match="have changed since it was prepared"):
        open_dataset("ml-100k")
    _damage(folder, "truncated npz")
    for f in source.iterdir():
        f.unlink()
    source.rmdir()
    with pytest.raises(DataError, match="its source .* is gone or unreadable"):
        open_dataset("ml-100k")  # never RecBole's 943 users in its place


# -- 11: odd raw rows are counted, not swallowed ------------------------------------------
def test_duplicate_and_non_finite_ratings_are_counted(tmp_path: Path, capsys) -> None:
    rows = [(1, 10, 5, 100), (1, 10, 5, 100), (1, 11, "nan", 200), (1, 12, "inf", 300),
            (1, 13, 4, 400), (2, 10, 4, 100), (2, 11, 3, 200)]  # fmt: skip
    folder = write_ml100k(tmp_path / "odd", ratings=rows)
    dataset = preprocess(read_ml100k(folder), DatasetSpec("odd", "ml-100k"))
    assert dataset.manifest["dropped"] == {"non_finite_ratings": 2, "duplicate_events": 1}
    assert dataset.n_interactions == 4 and np.isfinite(dataset.rating).all()
    assert main(["data", "prepare", "ml-100k", "--source", str(folder)]) == 0
    assert "dropped: 2 non finite ratings, 1 duplicate events" in capsys.readouterr().out


def test_serve_port_out_of_range(capsys) -> None:
    assert main(["serve", "some-run", "--port", "99999"]) == 1
    assert "--port must be between 1 and 65535" in capsys.readouterr().err
    assert main(["serve", "some-run", "--encoder-threads", "0"]) == 1
    assert "--encoder-threads must be at least 1" in capsys.readouterr().err


def test_npz_damage_helper_really_damages(tiny_folder: Path) -> None:
    # Guards the tests above: a truncated archive must not still be a readable zip.
    prepare_dataset("ml-100k", source=tiny_folder)
    folder = prepared_folder("ml-100k")
    _damage(folder, "truncated npz")
    assert not zipfile.is_zipfile(folder / "interactions.npz")


# -- 2 and 7: the LLM client ---------------------------------------------------------------
def test_redirect_to_another_host_never_gets_the_key(tiny, tmp_path: Path, monkeypatch) -> None:
    from tests.fake_llm import FakeLLM, ok
    from ur4rec.text.generate import ResponseCache, build_jobs, generate
    from ur4rec.text.llm import ChatClient, LLMError

    elsewhere = FakeLLM(lambda prompt, attempt: ok("stolen"))
    target = elsewhere.url.replace("127.0.0.1", "localhost") + "/chat/completions"
    redirector = FakeLLM(lambda prompt, attempt: (302, b"", 0.0, {"Location": target}))
    monkeypatch.setenv("UR4REC_TEST_KEY", "sk-secret-123")
    try:
        client = ChatClient(redirector.url, "m", api_key_env="UR4REC_TEST_KEY", max_retries=0)
        with pytest.raises(LLMError, match="does not follow redirects") as info:
            client.complete("hello")
        assert "sk-secret-123" not in str(info.value)
        jobs = build_jobs(tiny, "items")[:2]
        with pytest.raises(LLMError, match="redirect"):
            generate(jobs, client, ResponseCache(tmp_path / "cache"), quiet=True)
        assert redirector.auth_headers and elsewhere.requests == 0
    finally:
        elsewhere.close()
        redirector.close()


@pytest.mark.parametrize(
    "body",
    [
        b'{"message": "hello"}',
        b'{"choices": [{"message": "hello"}]}',
        b'{"choices": [{"message": {"content": 123}}]}',
        b'{"choices": [{"message": {"content": "fine"}}], "usage": [1]}',
        b'{"choices": ["text"]}',
        b"[1, 2]",
    ],
)
def test_wrongly_shaped_answers_fall_back(tiny, tmp_path: Path, body: bytes) -> None:
    from tests.fake_llm import FakeLLM, ok
    from ur4rec.text.generate import ResponseCache, build_jobs, generate
    from ur4rec.text.llm import ChatClient

    jobs = build_jobs(tiny, "items")[:3]
    odd = jobs[0].prompt
    fake = FakeLLM(lambda p, a: (200, body, 0.0, {}) if p == odd else ok("fine"))
    try:
        client = ChatClient(fake.url, "m", max_retries=1, backoff=0.01)
        result = generate(jobs, client, ResponseCache(tmp_path / "c"), quiet=True)
    finally:
        fake.close()
    assert result.status[jobs[0].raw_id].startswith("fallback: failed")
    assert "unreadable answer" in result.status[jobs[0].raw_id]
    assert result.texts[jobs[0].raw_id] == jobs[0].fallback
    assert fake.attempts[odd] == 2  # retried once
    assert {result.status[j.raw_id] for j in jobs[1:]} == {"llm"}


def test_cache_is_keyed_by_endpoint_and_errors_redact_the_key(
    tiny, tmp_path: Path, monkeypatch
) -> None:
    from tests.fake_llm import FakeLLM, ok
    from ur4rec.text.generate import ResponseCache, build_jobs, generate
    from ur4rec.text.llm import ChatClient, LLMError

    monkeypatch.setenv("UR4REC_TEST_KEY", "sk-secret-456")
    jobs = build_jobs(tiny, "items")[:2]
    cache = ResponseCache(tmp_path / "c")
    one = FakeLLM(lambda p, a: ok("from one"))
    two = FakeLLM(lambda p, a: ok("from two"))
    echo = FakeLLM(lambda p, a: (401, b'{"error": "bad key sk-secret-456"}', 0.0, {}))
    try:
        first = generate(jobs, ChatClient(one.url, "same-name"), cache, quiet=True)
        second = generate(jobs, ChatClient(two.url, "same-name"), cache, quiet=True)
        client = ChatClient(echo.url, "m", api_key_env="UR4REC_TEST_KEY", max_retries=0)
        with pytest.raises(LLMError, match="HTTP 401") as info:
            client.complete("hi")
    finally:
        for server in (one, two, echo):
            server.close()
    assert set(first.texts.values()) == {"from one"}
    assert set(second.texts.values()) == {"from two"} and two.requests == 2
    assert "sk-secret-456" not in str(info.value) and "[redacted]" in str(info.value)
