"""Regenerate the tables in docs/results.md from the benchmarks' result files.

    .venv/bin/python benchmarks/results_doc.py            # rewrite docs/results.md in place
    .venv/bin/python benchmarks/results_doc.py --check    # exit 1 if a table is out of date

Each generated table sits between ``<!-- table: NAME -->`` and ``<!-- end table -->`` in the
document; the text around it is left alone. A table is rendered from its result file under
docs/results/ (written there by the benchmark named in it) and opens with the command that
produced the file, read from the file itself. A table whose file is missing is left as it is.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ur4rec.measures import SAMPLED_99, canonical_protocol
from ur4rec.report_table import format_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
RESULTS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _md(rows: list[dict[str, Any]], columns: list[str]) -> str:
    return format_table(rows, columns, markdown=True)


def serve_load(path: Path) -> str:
    data = json.loads(path.read_text(encoding="utf-8"))
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in data["rows"]:
        by_scenario.setdefault(row["scenario"], []).append(row)
    rows = []
    for scenario, cells in by_scenario.items():
        cells.sort(key=lambda r: r["clients"])

        def joined(key: str, cells: list[dict[str, Any]] = cells) -> str:
            return " / ".join(_num(float(r[key])) for r in cells)

        rows.append(
            {
                "scenario": scenario,
                "clients": " / ".join(str(r["clients"]) for r in cells),
                "req/s": joined("req_per_s"),
                "p50 ms": joined("p50_ms"),
                "p99 ms": joined("p99_ms"),
                "errors": sum(int(r["errors"]) for r in cells),
                "/health p99 ms": joined("health_p99_ms"),
            }
        )
    soak, rss = data["soak"], data["rss_mib"]
    targets = "; ".join(
        f"{name} <= {t['target']:g}: {float(t['measured']):.1f} "
        + ("(met)" if t["met"] else "(**missed**)")
        for name, t in data["targets"].items()
    )
    return (
        f"`.venv/bin/python {data['command']}` ({data['time'][:10]}; {data['workers']} server "
        f"process, {data['threads']} scoring thread, {data['cpus']} CPUs, "
        f"{data['seconds_per_row']:g} s per row)\n\n"
        + _md(rows, list(rows[0]))
        + f"\n\nSoak: {soak['requests']:,} POSTs with new texts and `explain=true`, "
        f"{soak['errors']} errors; server RSS {rss['start']:.0f} MiB after start, "
        f"{rss['after_load']:.1f} after the load table, {rss['end']:.1f} after the soak.\n"
        f"Targets: {targets}.\n"
    )


def encoder_precision(path: Path) -> str:
    d = json.loads(path.read_text(encoding="utf-8"))
    rows = [
        {"precision": precision, **{k: f"{v:.1f}" for k, v in threads.items()}}
        for precision, threads in d["encode_ms_p50"].items()
    ]
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; native bfloat16: "
        f"{'yes' if d['native_bfloat16'] else 'no'}; {d['histories']} histories, "
        f"{d['mean_tokens']:.0f} tokens on average)\n\n"
        f"Cosine float32 / bfloat16: min {d['cosine_min']:.5f}, mean {d['cosine_mean']:.5f}. "
        f"Top-10 identical for {100 * d['identical_top10_share']:.2f}% of the histories "
        f"(mean overlap {d['top10_agreement_mean']:.4f}, worst {d['top10_agreement_min']:.1f}).\n"
        "Encoding one text, p50 ms:\n\n" + _md(rows, list(rows[0])) + "\n"
    )


def backbones(path: Path) -> str:
    lines = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    command = lines[0].get("command", "benchmarks/backbones.py") if lines else ""
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in lines:
        protocol = canonical_protocol(r["protocol"])  # rows of older code
        groups.setdefault((r["config"], protocol, r["split"]), []).append(r)
    rows = []
    for config in dict.fromkeys(r["config"] for r in lines):
        for protocol in ("full", SAMPLED_99):
            row: dict[str, Any] = {"config": config, "protocol": protocol}
            for split in ("valid", "test"):
                cell = groups.get((config, protocol, split), [])
                for metric in ("ndcg@10", "hit@10"):
                    values = [float(r[metric]) for r in cell]
                    spread = statistics.stdev(values) if len(values) > 1 else 0.0
                    row[f"{split} {metric}"] = (
                        f"{statistics.mean(values):.4f} ± {spread:.4f}" if values else ""
                    )
            row["seeds"] = len(groups.get((config, protocol, "test"), []))
            rows.append(row)
    return f"`.venv/bin/python {command}`\n\n" + _md(rows, list(rows[0])) + "\n"


TABLES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "serve-load": ("serve-load.json", serve_load),
    "encoder-precision": ("encoder-precision.json", encoder_precision),
    "backbones": ("backbones.jsonl", backbones),
}


def render(text: str, results: Path = RESULTS) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in TABLES:
            raise SystemExit(f"docs: unknown table {name!r}; known: {', '.join(TABLES)}")
        file, renderer = TABLES[name]
        if not (results / file).is_file():
            print(f"{name}: {results / file} is missing; table left as it is", file=sys.stderr)
            return match.group(0)
        return match.group(1) + renderer(results / file) + match.group(4)

    return BLOCK.sub(replace, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only say whether it is current")
    parser.add_argument("--doc", default=str(DOC))
    args = parser.parse_args()
    doc = Path(args.doc)
    text = doc.read_text(encoding="utf-8")
    new = render(text)
    if args.check:
        print("up to date" if new == text else f"{doc} is out of date: run {Path(__file__).name}")
        return 0 if new == text else 1
    if new != text:
        doc.write_text(new, encoding="utf-8")
    print(f"{doc}: {len(BLOCK.findall(new))} generated tables")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
