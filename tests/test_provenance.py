"""Provenance: what a run and a result record about their code, config and data, and what the
benchmarks and the results document do with a result of other code."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from ur4rec.config import dump_config, load_config
from ur4rec.data.prepare import open_dataset, prepare_dataset
from ur4rec.provenance import code_version, source_hash, text_hash
from ur4rec.runs.layout import run_stale_reasons
from ur4rec.train import run

from .test_trainer import TINY

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_doc  # noqa: E402
import reuse  # noqa: E402


@pytest.fixture
def tiny_run(cyclic_folder: Path, tmp_path: Path) -> Path:
    prepare_dataset("ml-100k", source=cyclic_folder)
    return run.train(load_config(None, [*TINY, "train.epochs=1"]), tmp_path / "run", quiet=True)


def _tamper(run_dir: Path, **code: object) -> None:
    info = json.loads((run_dir / "run.json").read_text())
    info["provenance"]["code"].update(code)
    (run_dir / "run.json").write_text(json.dumps(info))


def test_a_run_records_its_code_config_and_data(tiny_run: Path) -> None:
    info = json.loads((tiny_run / "run.json").read_text())
    origin = info["provenance"]
    assert origin["code"]["source_hash"] == source_hash() and len(source_hash()) == 64
    assert origin["code"] == code_version()
    assert {"commit", "dirty", "version"} <= set(origin["code"])
    assert origin["config_hash"] == text_hash((tiny_run / "config.yaml").read_text())
    assert origin["data_hash"] == open_dataset("ml-100k").content_hash
    assert run_stale_reasons(tiny_run) == []
    # Resuming with the same code adds nothing; with other code it is recorded.
    run.resume(tiny_run, quiet=True)
    assert "resumed_by" not in json.loads((tiny_run / "run.json").read_text())


def test_the_source_hash_follows_the_package_files(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "prompt.md").write_text("hello\n")
    first = source_hash.__wrapped__(package)
    (package / "notes.txt").write_text("not source")
    assert source_hash.__wrapped__(package) == first
    (package / "sub" / "prompt.md").write_text("hello!\n")
    assert source_hash.__wrapped__(package) != first


def test_stale_reasons_name_code_config_and_data(tiny_run: Path) -> None:
    own = (tiny_run / "config.yaml").read_text()
    other = dump_config(load_config(None, [*TINY, "train.epochs=2"]))
    assert run_stale_reasons(tiny_run, other) == ["its config differs"]
    assert run_stale_reasons(tiny_run, own, "0" * 64) == ["its data differs"]
    _tamper(tiny_run, source_hash="f" * 64, commit="abc1234")
    assert run_stale_reasons(tiny_run) == ["it was computed by other code (commit abc1234)"]


def test_a_benchmark_reuses_only_current_runs(tiny_run: Path, capsys) -> None:
    wanted = (tiny_run / "config.yaml").read_text()
    assert reuse.plan_run(tiny_run, wanted) == "reuse"
    other = dump_config(load_config(None, [*TINY, "train.epochs=2"]))
    assert reuse.plan_run(tiny_run, other) == "train"  # set aside, not reused
    stale = tiny_run.with_name("run.stale")
    assert not tiny_run.exists() and (stale / "summary.json").is_file()
    assert "not reused (its config differs)" in capsys.readouterr().out
    stale.rename(tiny_run)
    (tiny_run / "summary.json").unlink()
    assert reuse.plan_run(tiny_run, wanted) == "resume"
    _tamper(tiny_run, source_hash="f" * 64)
    assert reuse.plan_run(tiny_run, wanted) == "train"
    assert "computed by other code" in capsys.readouterr().out
    # A run of the same config and code elsewhere is found; one of other code is not.
    found = reuse.find_run([stale.parent], wanted)
    assert found is None  # the only run there is stale
    fresh = run.train(load_config(None, [*TINY, "train.epochs=1"]), stale.parent / "b", quiet=True)
    assert reuse.find_run([stale.parent], wanted) == fresh


def test_ranks_are_recomputed_for_other_code_or_another_checkpoint(
    tiny_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ur4rec.train import run as run_module

    calls = []
    real = run_module.user_ranks

    def counting(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(run_module, "user_ranks", counting)
    cases = [("test", "full")]
    first = reuse.cached_ranks(tiny_run, cases)
    again = reuse.cached_ranks(tiny_run, cases)
    assert len(calls) == 1 and np.array_equal(first["test full"], again["test full"])
    with np.load(tiny_run / "ranks.npz") as stored:
        meta = json.loads(str(stored["provenance"]))
        ranks = {k: stored[k] for k in stored.files if k != "provenance"}
    meta["code"]["source_hash"] = "f" * 64
    np.savez(tiny_run / "ranks.npz", provenance=np.array(json.dumps(meta)), **ranks)
    reuse.cached_ranks(tiny_run, cases)
    assert len(calls) == 2
    # Another checkpoint (another seed's weights) in the same run folder.
    other = run.train(
        load_config(None, [*TINY, "train.epochs=1", "seed=1"]), tiny_run.parent / "o", quiet=True
    )
    for name in ("best.pt", "best.pt.sha256"):
        (tiny_run / name).write_bytes((other / name).read_bytes())
    reuse.cached_ranks(tiny_run, cases)
    assert len(calls) == 3


def test_merge_rows_replaces_by_key_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    reuse.merge_rows(path, [{"k": 1, "v": "a"}, {"k": 2, "v": "b"}], ("k",))
    reuse.merge_rows(path, [{"k": 2, "v": "c"}], ("k",))
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows == [{"k": 1, "v": "a"}, {"k": 2, "v": "c"}]


def test_merge_rows_replaces_stored_rows_that_lack_a_key_field_by_its_default(
    tmp_path: Path,
) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text(json.dumps({"k": 1, "v": "old"}) + "\n" + json.dumps({"k": 2, "v": "b"}) + "\n")
    new = [{"k": 1, "group": "all", "v": "new"}, {"k": 1, "group": "tail", "v": "t"}]
    reuse.merge_rows(path, new, ("k", "group"), defaults={"group": "all"})
    rows = [json.loads(x) for x in path.read_text().splitlines()]
    assert rows == [{"k": 2, "v": "b"}, *new]
    # Without the default the old row has another key and stays beside the new one.
    reuse.merge_rows(path, [{"k": 2, "group": "all", "v": "c"}], ("k", "group"))
    assert {"k": 2, "v": "b"} in [json.loads(x) for x in path.read_text().splitlines()]


def test_the_results_document_marks_results_of_other_code(tmp_path: Path) -> None:
    current = {"code": code_version()}
    older = {"code": {**code_version(), "source_hash": "f" * 64, "commit": "abc1234"}}
    rows = [
        {"config": name, "seed": s, "command": "benchmarks/backbones.py --seeds 1,2",
         "protocol": p, "split": part, "ndcg@10": 0.1 * s, "hit@10": 0.2 * s, "provenance": o}
        for name, o in (("new", current), ("old", older), ("none", None))
        for s in (1, 2) for p in ("full", "sampled-with-history:99") for part in ("valid", "test")
    ]  # fmt: skip
    for row in rows:
        if row["provenance"] is None:
            del row["provenance"]
    (tmp_path / "backbones.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = "<!-- table: backbones -->\n<!-- end table -->\n"
    out = results_doc.render(doc, tmp_path)
    assert "| new | full |" in out
    assert "| old (older code) | full |" in out and "| none (older code) | full |" in out
    assert "**Older code: 16 of 24 results" in out and "commit abc1234" in out
    current_only = [r for r in rows if r["config"] == "new"]
    (tmp_path / "backbones.jsonl").write_text("".join(json.dumps(r) + "\n" for r in current_only))
    out = results_doc.render(doc, tmp_path)
    assert "Computed by the current code" in out and "older code" not in out.lower()
