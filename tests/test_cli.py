"""The CLI end to end, in a subprocess-free way (main() with argv), on real and tiny data."""

import json
from pathlib import Path

import pytest

from ur4rec.cli import main
from ur4rec.data.sources import recbole_folder

needs_recbole = pytest.mark.skipif(recbole_folder() is None, reason="recbole==1.2.1 not installed")


def run(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_prepare_from_folder_then_baseline_json(capsys, tiny_folder: Path) -> None:
    code, out, _ = run(capsys, "data", "prepare", "ml-100k", "--source", str(tiny_folder), "--json")
    assert code == 0
    manifest = json.loads(out)
    assert manifest["counts"]["interactions"] == 16 and manifest["reused"] is False
    code, out, _ = run(capsys, "data", "prepare", "ml-100k")
    assert code == 0 and out.startswith("reused ml-100k")
    code, out, _ = run(
        capsys, "baseline", "pop", "--dataset", "ml-100k", "--protocol", "sampled:2",
        "--split", "valid", "--ks", "1,3", "--json",
    )  # fmt: skip
    assert code == 0
    result = json.loads(out)
    assert {"hit@1", "ndcg@3", "mrr@3", "dataset", "protocol", "split", "users"} <= set(result)
    assert result["users"] == 3 and result["protocol"] == "sampled:2"


@needs_recbole
def test_seed_protocol_popularity_matches_known_figure(capsys) -> None:
    """The report's protocol on the report's data: popularity alone scores about 0.40."""
    code, out, _ = run(
        capsys, "baseline", "pop", "--dataset", "ml-100k-liked", "--protocol", "seed", "--json"
    )
    assert code == 0
    result = json.loads(out)
    assert result["users"] == 938
    assert 0.38 < result["hit@10"] < 0.42
    code, out, _ = run(capsys, "baseline", "pop", "--dataset", "ml-100k-liked")
    assert code == 0 and "hit@10" in out


@needs_recbole
def test_quickstart_prints_table(capsys) -> None:
    code, out, _ = run(capsys, "quickstart", "--json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 12
    assert {(r["dataset"], r["protocol"], r["model"]) for r in rows} >= {
        ("ml-100k", "full", "ease"),
        ("ml-100k-liked", "full", "ease-recent"),
        ("ml-100k-liked", "sampled-with-history:99", "pop"),
    }
    by = {(r["dataset"], r["protocol"], r["model"]): r["hit@10"] for r in rows}
    sampled = "sampled-with-history:99"
    assert by[("ml-100k-liked", sampled, "ease")] > by[("ml-100k-liked", sampled, "pop")]


def test_errors_are_clear_and_non_zero(capsys, tmp_path: Path) -> None:
    code, _, err = run(capsys, "baseline", "pop", "--dataset", "ml-100k", "--protocol", "top:5")
    assert code == 1 and "unknown protocol 'top:5'" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "u.data").write_text("1\t2\t3\n")
    (bad / "u.item").write_text("")
    code, _, err = run(capsys, "data", "prepare", "ml-100k", "--source", str(bad))
    assert code == 1 and "u.data:1: expected 4 fields" in err
    with pytest.raises(SystemExit) as exc:
        main(["data", "prepare", "ml-10m"])
    assert exc.value.code == 2
    assert "invalid choice: 'ml-10m'" in capsys.readouterr().err
