"""docs/results.md's generated tables: rendered from the result files, and current."""

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import results_doc  # noqa: E402


@pytest.mark.parametrize("doc", results_doc.DOCS, ids=lambda d: d.name)
def test_docs_results_tables_are_current(doc: Path) -> None:
    text = doc.read_text(encoding="utf-8")
    assert results_doc.render(text) == text, "run: .venv/bin/python benchmarks/results_doc.py"


def test_a_table_is_rendered_between_its_markers(tmp_path: Path) -> None:
    rows = [
        {"config": "gru4rec-x", "seed": s, "command": "benchmarks/backbones.py --seeds 1,2",
         "protocol": p, "split": part, "ndcg@10": 0.1 * s, "hit@10": 0.2 * s}
        for s in (1, 2) for p in ("full", "seed") for part in ("valid", "test")
    ]  # fmt: skip
    (tmp_path / "backbones.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    doc = "intro\n<!-- table: backbones -->\nstale text\n<!-- end table -->\noutro\n"
    out = results_doc.render(doc, tmp_path)
    assert out.startswith("intro\n<!-- table: backbones -->\n`.venv/bin/python benchmarks/")
    assert "stale text" not in out and out.endswith("<!-- end table -->\noutro\n")
    assert "| gru4rec-x (older code) | full | 0.1500 ± 0.0707 | 0.3000 ± 0.1414 |" in out
    # A table whose result file is missing stays as it was.
    assert results_doc.render(doc, tmp_path / "none") == doc
