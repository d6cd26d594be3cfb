"""Regenerate the tables in docs/results.md (and the README's headline table) from the
benchmarks' result files.

    .venv/bin/python benchmarks/results_doc.py            # rewrite the documents in place
    .venv/bin/python benchmarks/results_doc.py --check    # exit 1 if a table is out of date

Each generated table sits between ``<!-- table: NAME -->`` and ``<!-- end table -->`` in the
document; the text around it is left alone. A table is rendered from its result file under
docs/results/ (written there by the benchmark named in it) and opens with the command that
produced the file, read from the file itself, and the code it was computed by. Results carry
their provenance (ur4rec.provenance): a result computed by other code than the package as it
is now (another source hash), or one that records no provenance, is marked in its table (rows
with "older code") until the command is run again. A table whose file is missing is left as
it is.
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
from ur4rec.provenance import describe, source_hash
from ur4rec.report_table import format_table

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "results.md"
# The documents with generated tables: the record, and the README's headline table.
DOCS = (DOC, ROOT / "README.md")
RESULTS = ROOT / "docs" / "results"
BLOCK = re.compile(r"(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- end table -->)", re.S)


def _num(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}"


def _md(rows: list[dict[str, Any]], columns: list[str]) -> str:
    return format_table(rows, columns, markdown=True)


def is_current(origin: dict[str, Any] | None) -> bool:
    """Was this result computed by the package's code as it is now?"""
    code = (origin or {}).get("code") or {}
    return code.get("source_hash") == source_hash()


def code_line(origins: list[dict[str, Any] | None]) -> str:
    """Which code computed a table's results: current, or how many are older."""
    older = [o for o in origins if not is_current(o)]
    if not older:
        commits = sorted({str(o["code"].get("commit") or "unknown")[:10] for o in origins if o})
        dirty = any(o["code"].get("dirty") for o in origins if o)
        return (
            f"Computed by the current code (source hash {source_hash()[:12]}; run at "
            f"commit{'s' if len(commits) > 1 else ''} {', '.join(commits)}"
            + (", with uncommitted changes to the package" if dirty else "")
            + ")."
        )
    known = sorted({describe(o["code"]) for o in older if o and o.get("code")})
    where = f" ({', '.join(known)})" if known else " (no provenance recorded)"
    return (
        f"**Older code: {len(older)} of {len(origins)} results were computed by other code "
        f"than the package as it is now{where}; they are marked and stand until the command is "
        "run again.**"
    )


def _mark(label: str, origins: list[dict[str, Any] | None]) -> str:
    return label if all(is_current(o) for o in origins) else f"{label} (older code)"


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _current_or_all(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The runs of the current code where there are any (they stand for the variant), else
    those of the code that ran the most of them (the later listed on a tie), so seeds of
    different code are not averaged together."""
    current = [r for r in runs if is_current(r.get("provenance"))]
    if current or not runs:
        return current or runs

    def code(r: dict[str, Any]) -> str | None:
        return (r.get("provenance") or {}).get("code", {}).get("source_hash")

    counts: dict[str | None, int] = {}
    for r in runs:
        counts[code(r)] = counts.get(code(r), 0) + 1
    last = {code(r): i for i, r in enumerate(runs)}
    chosen = max(counts, key=lambda c: (counts[c], last[c]))
    return [r for r in runs if code(r) == chosen]


def _interval(d: dict[str, Any]) -> str:
    """A paired difference: its mean, the users' and (with several seeds) the seeds' 95%."""
    seeds = (
        f" [{d['seeds_low']:+.4f}, {d['seeds_high']:+.4f}]" if d["seeds_low"] is not None else ""
    )
    return f"{d['mean']:+.4f} [{d['users_low']:+.4f}, {d['users_high']:+.4f}]{seeds}"


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def _mean_sd(values: list[float]) -> str:
    if not values:
        return ""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.4f} ± {spread:.4f}"


def _commands(rows: list[dict[str, Any]]) -> str:
    commands = dict.fromkeys(r["command"] for r in rows if r.get("command"))
    return "\n".join(f"`.venv/bin/python {c}`" for c in commands)


def serve_load(path: Path) -> str:
    data = _json(path)
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
        f"{data['seconds_per_row']:g} s per row)\n{code_line([data.get('provenance')])}\n\n"
        + _md(rows, list(rows[0]))
        + f"\n\nSoak: {soak['requests']:,} POSTs with new texts and `explain=true`, "
        f"{soak['errors']} errors; server RSS {rss['start']:.0f} MiB after start, "
        f"{rss['after_load']:.1f} after the load table, {rss['end']:.1f} after the soak.\n"
        f"Targets: {targets}.\n"
    )


def encoder_precision(path: Path) -> str:
    d = _json(path)
    rows = [
        {"encoder": label, **{k: f"{v:.1f}" for k, v in threads.items()}}
        for label, threads in d["encode_ms_p50"].items()
    ]
    # Files of older code compared bfloat16 alone, with its figures at the top level.
    against = d.get("against_float32") or {"bfloat16": d}
    lines = [
        f"{label} against float32: cosine min {a['cosine_min']:.7f}, mean "
        f"{a['cosine_mean']:.7f}; top-10 identical for {100 * a['identical_top10_share']:.2f}% "
        f"of the histories (mean overlap {a['top10_agreement_mean']:.4f}, worst "
        f"{a['top10_agreement_min']:.1f})."
        for label, a in against.items()
    ]
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; {d.get('cpu') or 'CPU unknown'}; "
        f"native bfloat16: {'yes' if d['native_bfloat16'] else 'no'}; {d['histories']} "
        f"histories, {d['mean_tokens']:.0f} tokens on average)\n"
        f"{code_line([d.get('provenance')])}\n\n" + "\n".join(f"- {x}" for x in lines) + "\n\n"
        "Encoding one text, p50 ms (PyTorch unless marked onnx):\n\n"
        + _md(rows, list(rows[0]))
        + "\n"
    )


def backbones(path: Path) -> str:
    lines = _jsonl(path)
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for r in lines:
        protocol = canonical_protocol(r["protocol"])  # rows of older code
        groups.setdefault((r["config"], protocol, r["split"]), []).append(r)
    rows = []
    for config in dict.fromkeys(r["config"] for r in lines):
        origins = [r.get("provenance") for r in lines if r["config"] == config]
        for protocol in ("full", SAMPLED_99):
            row: dict[str, Any] = {"config": _mark(config, origins), "protocol": protocol}
            for split in ("valid", "test"):
                cell = groups.get((config, protocol, split), [])
                for metric in ("ndcg@10", "hit@10"):
                    row[f"{split} {metric}"] = _mean_sd([float(r[metric]) for r in cell])
            row["seeds"] = len(groups.get((config, protocol, "test"), []))
            rows.append(row)
    return (
        _commands(lines)
        + "\n"
        + code_line([r.get("provenance") for r in lines])
        + "\n\n"
        + _md(rows, list(rows[0]))
        + "\n"
    )


def baselines(path: Path) -> str:
    """Every baseline on valid and test under every protocol measured."""
    d = _json(path)
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in d["table"]:
        row = rows.setdefault(
            (r["dataset"], r["protocol"], r["model"]),
            {"dataset": r["dataset"], "protocol": r["protocol"], "model": r["model"],
             "chosen on valid": _baseline_setting(r)},
        )  # fmt: skip
        for m in ("hit@10", "ndcg@10"):
            row[f"{r['split']} {m}"] = f"{r[m]:.4f}"
    # Columns in a fixed order: valid before test, whatever order the file has.
    metrics = [f"{part} {m}" for part in ("valid", "test") for m in ("hit@10", "ndcg@10")]
    columns = ["dataset", "protocol", "model", "chosen on valid", *metrics]
    unique = list(rows.values())
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; EASE's lambda "
        f"and RP3beta's alpha and beta chosen per model and dataset on {d['tuned_on']}; "
        "ease-recent reads the last "
        f"{d['ease_recent']} items)\n{code_line([d['provenance']])}\n\n"
        + _md(unique, columns)
        + "\n"
    )


def _baseline_setting(row: dict[str, Any]) -> str:
    if row.get("lambda"):
        return f"lambda {row['lambda']:g}"
    if "alpha" in row:
        return f"alpha {row['alpha']:g}, beta {row['beta']:g}"
    return ""


def rp3beta_sweep(path: Path) -> str:
    """Validation NDCG@10 of RP3beta per alpha (rows) and beta (columns), per dataset."""
    d = _json(path)
    if "rp3beta_sweep" not in d:
        raise ValueError(f"{path} has no RP3beta sweep: run benchmarks/baselines.py again")
    blocks = []
    whole = [r for r in d["rp3beta_sweep"] if not r.get("recent")]  # files before windows
    for dataset in dict.fromkeys(r["dataset"] for r in whole):
        sweep = [r for r in whole if r["dataset"] == dataset]
        best = max(sweep, key=lambda r: (r["ndcg@10"], -r["alpha"], -r["beta"]))
        rows = []
        for alpha in dict.fromkeys(r["alpha"] for r in sweep):
            row: dict[str, Any] = {"alpha": f"{alpha:g}"}
            for cell in (r for r in sweep if r["alpha"] == alpha):
                text = f"{cell['ndcg@10']:.4f}"
                row[f"beta {cell['beta']:g}"] = f"**{text}**" if cell is best else text
            rows.append(row)
        blocks.append(f"{dataset} (best in bold):\n\n" + _md(rows, list(rows[0])))
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; validation, full "
        f"ranking, NDCG@10; 200 neighbours per item, the whole history)\n"
        f"{code_line([d['provenance']])}\n\n" + "\n\n".join(blocks) + "\n"
    )


def rp3beta_window(path: Path) -> str:
    """RP3beta's best validation NDCG@10 per window, per dataset, and the chosen window on
    test."""
    d = _json(path)
    if "rp3beta_window" not in d:
        raise ValueError(f"{path} has no RP3beta window sweep: run benchmarks/baselines.py again")
    blocks = []
    for chosen in d["rp3beta_window"]:
        dataset = chosen["dataset"]
        sweep = [r for r in d["rp3beta_sweep"] if r["dataset"] == dataset]
        rows = []
        for w in dict.fromkeys(r["recent"] for r in sweep):
            cells = [r for r in sweep if r["recent"] == w]
            best = max(cells, key=lambda r: (r["ndcg@10"], -r["alpha"], -r["beta"]))
            text = f"{best['ndcg@10']:.4f}"
            rows.append({
                "window": "all items" if w == 0 else f"last {w}",
                "alpha / beta": f"{best['alpha']:g} / {best['beta']:g}",
                "valid NDCG@10": f"**{text}**" if w == chosen["recent"] else text,
            })  # fmt: skip
        window = "all items" if chosen["recent"] == 0 else f"the last {chosen['recent']}"
        blocks.append(
            f"{dataset} (chosen in bold):\n\n" + _md(rows, list(rows[0])) + "\n\n"
            f"Chosen on validation: {window}, alpha {chosen['alpha']:g}, beta "
            f"{chosen['beta']:g}; test NDCG@10 {chosen['test_ndcg@10']:.4f}, Hit@10 "
            f"{chosen['test_hit@10']:.4f} (full ranking)."
        )
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; validation, full "
        f"ranking, NDCG@10; each window's best alpha and beta; 200 neighbours per item)\n"
        f"{code_line([d['provenance']])}\n\n" + "\n\n".join(blocks) + "\n"
    )


def ease_sweep(path: Path) -> str:
    """Validation NDCG@10 of EASE per lambda and window, one block per dataset."""
    d = _json(path)
    blocks = []
    for dataset in dict.fromkeys(r["dataset"] for r in d["sweep"]):
        sweep = [r for r in d["sweep"] if r["dataset"] == dataset]
        windows = list(dict.fromkeys(r["recent"] for r in sweep))
        best = max(sweep, key=lambda r: r["ndcg@10"])
        rows = []
        for l2 in dict.fromkeys(r["lambda"] for r in sweep):
            row: dict[str, Any] = {"lambda": f"{l2:g}"}
            for w in windows:
                cell = next(r for r in sweep if r["lambda"] == l2 and r["recent"] == w)
                text = f"{cell['ndcg@10']:.4f}"
                row["all items" if w == 0 else f"last {w}"] = (
                    f"**{text}**" if cell is best else text
                )
            rows.append(row)
        blocks.append(f"{dataset} (best in bold):\n\n" + _md(rows, list(rows[0])))
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; validation, full "
        f"ranking, NDCG@10)\n{code_line([d['provenance']])}\n\n" + "\n\n".join(blocks) + "\n"
    )


QUALITY_MODELS = {"sasrec": "stage 1 (SASRec)", "retriever": "retriever alone", "fused": "fused"}


def ur4rec_quality(path: Path) -> str:
    """Variants x seeds of the four-stage run: each model's valid and test figures."""
    lines = _jsonl(path)
    rows: list[dict[str, Any]] = []
    shown: list[dict[str, Any] | None] = []
    for dataset in dict.fromkeys(r["dataset"] for r in lines):
        for variant in dict.fromkeys(r["variant"] for r in lines if r["dataset"] == dataset):
            runs = sorted(
                (r for r in lines if r["dataset"] == dataset and r["variant"] == variant),
                key=lambda r: r["seed"],
            )
            runs = _current_or_all(runs)
            label = _mark(variant, [r.get("provenance") for r in runs])
            shown += [r.get("provenance") for r in runs]
            for model, name in QUALITY_MODELS.items():
                if any(f"{model} full valid ndcg@10" not in r for r in runs):
                    continue  # e.g. a variant without a retriever stage
                row: dict[str, Any] = {"dataset": dataset, "variant": label, "model": name}
                for protocol in ("full", SAMPLED_99):
                    for key in ("valid ndcg@10", "test hit@10", "test ndcg@10"):
                        values = [float(r[f"{model} {protocol} {key}"]) for r in runs
                                  if f"{model} {protocol} {key}" in r]  # fmt: skip
                        short = "1+99" if protocol == SAMPLED_99 else protocol
                        row[f"{short} {key}"] = _mean_sd(values)
                row["seeds"] = len(runs)
                rows.append(row)
            weights = [(r.get("sasrec_weight"), r.get("prior_weight")) for r in runs]
            rows[-1]["weights (SASRec/prior) by seed"] = ", ".join(
                f"{w}/{p}" if p is not None else f"{w}" for w, p in weights
            )
    return (
        _commands(lines)
        + "\n"
        + code_line(shown)
        + "\n\n"
        + _md(rows, list(dict.fromkeys(k for r in rows for k in r)))
        + "\n"
    )


def comparisons(path: Path) -> str:
    """Paired differences A - B in NDCG@10, with the users' and the seeds' 95% intervals."""
    lines = _jsonl(path)
    rows = []
    for r in lines:
        d = r["difference"]
        rows.append(
            {
                "A - B": _mark(f"{r['a']} - {r['b']}", r.get("run_provenance") or [None]),
                "split": r["split"],
                "protocol": r["protocol"],
                "users": r.get("group", "all"),
                "A NDCG@10": r["a ndcg@10"],
                "B NDCG@10": r["b ndcg@10"],
                "A - B [users' 95%] [seeds' 95%]": _interval(d),
                "seeds A better": f"{d['seeds_better']}/{d['seeds']}",
            }
        )
    origins = [o for r in lines for o in (r.get("run_provenance") or [None])]
    return _commands(lines) + "\n" + code_line(origins) + "\n\n" + _md(rows, list(rows[0])) + "\n"


def sasrec_sweep(path: Path) -> str:
    """SASRec's default and its variants on validation."""
    d = _json(path)
    rows = [
        {
            "variant": _mark(r["variant"], [r.get("provenance")]),
            "valid ndcg@10": f"{r['valid ndcg@10']:.4f}",
            "valid hit@10": f"{r['valid hit@10']:.4f}",
            "best epoch": r["best epoch"],
        }
        for r in d["rows"]
    ]
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; {d['config']}, "
        "seed 42, validation split, full ranking)\n"
        + code_line([r.get("provenance") for r in d["rows"]])
        + "\n\n"
        + _md(rows, list(rows[0]))
        + "\n"
    )


def ensemble(path: Path) -> str:
    """Stage-1 SASRec models alone and fused with each other (standardised scores summed)."""
    d = _json(path)
    rows = [
        {
            "split": r["split"],
            "protocol": r["protocol"],
            "single models": ", ".join(f"{x:.4f}" for x in r["single"])
            + f" (mean {statistics.mean(r['single']):.4f})",
            "first two fused": f"{r['first two fused']:.4f}",
            "all fused": f"{r['all fused']:.4f}",
        }
        for r in d["rows"]
    ]
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['time'][:10]}; {d['dataset']}, "
        f"the stage-1 models of the default runs of seeds {d['seeds']}; NDCG@10)\n"
        + code_line([d["provenance"], *d["run_provenance"]])
        + "\n\n"
        + _md(rows, list(rows[0]))
        + "\n"
    )


def headline(path: Path) -> str:
    """The README's table: test figures on ml-100k-liked of the baselines, SASRec alone and the
    default UR4Rec, read from the baselines, backbones and quality result files."""
    base = _json(path.parent / "baselines.json")
    quality = [r for r in _jsonl(path) if r["dataset"] == "ml-100k-liked"]
    sasrec = [r for r in _jsonl(path.parent / "backbones.jsonl")
              if r["config"] == "sasrec-ml-100k-liked" and r["split"] == "test"]  # fmt: skip
    columns = [(p, m) for p in ("full", SAMPLED_99) for m in ("hit@10", "ndcg@10")]
    names = {"pop": "popularity", "ease": "EASE", "ease-recent": "EASE, last 3 items"}
    rows: list[dict[str, Any]] = []
    origins: list[dict[str, Any] | None] = [base["provenance"]]
    for model, name in names.items():
        cells = {(r["protocol"], m): r[m] for r in base["table"] for m in ("hit@10", "ndcg@10")
                 if r["dataset"] == "ml-100k-liked" and r["split"] == "test"
                 and r["model"] == model}  # fmt: skip
        row = {"model on ml-100k-liked (test)": name}
        row.update({_column(p, m): f"{cells[(p, m)]:.4f}" for p, m in columns})
        rows.append(row)
    row = {"model on ml-100k-liked (test)": f"SASRec alone ({len(sasrec) // 2} seeds)"}
    for p, m in columns:
        row[_column(p, m)] = _mean_sd([float(r[m]) for r in sasrec if r["protocol"] == p])
    rows.append(row)
    origins += [r.get("provenance") for r in sasrec]
    for variant, name in (("default", "UR4Rec, default"), ("tuned", "UR4Rec, tuned backbone")):
        runs = [r for r in quality if r["variant"] == variant]
        runs = _current_or_all(runs)
        if not runs:
            continue
        row = {"model on ml-100k-liked (test)": f"{name} ({len(runs)} seeds)"}
        for p, m in columns:
            row[_column(p, m)] = _mean_sd([float(r[f"fused {p} test {m}"]) for r in runs])
        rows.append(row)
        origins += [r.get("provenance") for r in runs]
    return (
        "`bash benchmarks/record.sh` (baselines.py, backbones.py, ur4rec_quality.py); mean ± "
        "sd over seeds. " + code_line(origins) + "\n\n" + _md(rows, list(rows[0])) + "\n"
    )


def _column(protocol: str, metric: str) -> str:
    short = "1+99" if protocol == SAMPLED_99 else protocol
    return f"{short} {metric.replace('hit', 'Hit').replace('ndcg', 'NDCG')}"


def sasrec_speed(path: Path) -> str:
    d = _json(path)
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; {d['threads']} torch threads)\n"
        f"{code_line([d.get('provenance')])}\n\n"
        f"SASRec on {d['dataset']} ({d['interactions']:,} interactions, "
        f"{d['train_positions_per_epoch']:,} training positions per epoch): "
        + _epoch_figures(d)
        + ", "
        f"{d['full_eval_seconds_median']:.3f} s to rank every item for all "
        f"{d['eval_users']} users under the full protocol, peak RSS {d['peak_rss_mib']:.0f} MiB."
        + _machine_rate(d)
        + "\n"
    )


def _epoch_figures(d: dict) -> str:
    """The median epoch, per training precision where the record has several."""
    if "precisions" not in d:
        return f"**{d['epoch_seconds_median']:.2f} s per epoch** (median)"
    return (
        "; ".join(
            f"**{r['epoch_seconds_median']:.2f} s per epoch** in {p}"
            for p, r in d["precisions"].items()
        )
        + " (medians; `train.precision`, float32 by default)"
    )


def _machine_rate(d: dict) -> str:
    """The host's matmul rate around the run (shared hosts vary; older records lack it)."""
    if "matmul_gflops" not in d:
        return ""
    before, after = d["matmul_gflops"]
    cpu = ""
    if "cpu" in d:
        native = "native bfloat16" if d["native_bfloat16"] else "no native bfloat16"
        cpu = f" The CPU: {d['cpu']} ({native})."
    return (
        f" The machine's 2048x2048 float32 matmul ran at {before:.0f} GFLOP/s before the "
        f"epochs and {after:.0f} after." + cpu
    )


def import_speed(path: Path) -> str:
    d = _json(path)
    c = d["counts"]
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; {d['cpus']} cores)\n"
        f"{code_line([d.get('provenance')])}\n\n"
        f"{d['rows']:,} rows ({d['file_mib']} MiB of CSV, 1% of them repeated events) and a "
        f"{d.get('table_items', 0):,}-item table: **{d['seconds']:.1f} s, peak RSS "
        f"{d['peak_rss_mib']:,.0f} MiB** for the whole `ur4rec data import` process "
        f"(target: {d['target']}), giving {c['users']:,} users, {c['items']:,} items and "
        f"{c['interactions']:,} interactions ({d['dropped']['duplicate_events']:,} repeated "
        "events dropped).\n"
    )


def embedding_store(path: Path) -> str:
    d = _json(path)
    e, w, m, f = d["encode"], d["store_write"], d["store_map"], d["single_file"]
    rows = [
        {"what": "the memory-mapped store (shards)", "seconds": f"{m['seconds']:.1f}",
         "peak RSS (MiB)": f"{m['peak_rss_mib']:,}", "anonymous at the end (MiB)":
         f"{m['anon_mib_end']:,}", "file-backed at the end (MiB)": f"{m['file_mib_end']:,}"},
        {"what": "the one-file cache (loaded whole)", "seconds": f"{f['seconds']:.1f}",
         "peak RSS (MiB)": f"{f['peak_rss_mib']:,}", "anonymous at the end (MiB)":
         f"{f['anon_mib_end']:,}", "file-backed at the end (MiB)": f"{f['file_mib_end']:,}"},
    ]  # fmt: skip
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; {d['cpus']} cores)\n"
        f"{code_line([d.get('provenance')])}\n\n"
        f"Encoding {e['texts']:,} item texts with all-MiniLM-L6-v2 into an empty store, in chunks "
        f"of 512: **{e['texts_per_s']:.1f} texts/s**, peak RSS {e['peak_rss_mib']:,} MiB. "
        f"A store of {d['vectors']:,} vectors ({d['vectors_mib']:,} MiB) written in shards of "
        f"8,192 in {w['seconds']:.1f} s; opened (keys only) in {m['open_seconds']:.1f} s. "
        "Gathering all of them in a shuffled order into the aligned matrix a run reads:\n\n"
        + _md(rows, list(rows[0]))
        + "\n"
    )


def tune_search(path: Path) -> str:
    blocks = []
    for d in _json(path):
        best = d["best"]
        keys = list(best["params"])
        trials = [
            {"trial": t["trial"], "state": t["state"],
             d["metric"]: "" if t["value"] is None else f"{t['value']:.4f}",
             **{k: _fmt_param(t.get(k)) for k in keys},
             "epochs": t.get("epochs") or "",
             "seconds": f"{t['seconds']:.0f}" if t.get("seconds") is not None else ""}
            for t in d["trials"]
        ]  # fmt: skip
        states = ", ".join(f"{n} {s}" for s, n in d["states"].items())
        blocks.append(
            f"`.venv/bin/python {d['command']}` ({d['time'][:10]})\n"
            f"{code_line([d.get('provenance')])}\n\n"
            f"{d['config']} over {d['space']}: {len(d['trials'])} trials ({states}), "
            f"{d['trial_seconds'] / 60:.0f} minutes of trials in all. Best: trial "
            f"{best['trial']}, validation {d['metric']} **{best['value']:.4f}**.\n\n"
            + _md(trials, list(trials[0]))
        )
    return "\n\n".join(blocks) + "\n"


def report_estimates(path: Path) -> str:
    """The report's estimated gain of each change beside the paired measurement."""
    d = _json(path)

    rows = []
    for r in d["rows"]:
        t = r["test"]
        rows.append({
            "change (A against B)": _mark(r["change"], r.get("run_provenance") or [None]),
            "report's estimate (Hit@10)": r["estimate"],
            "test 1+99 Hit@10 A / B": f"{t['sampled hit@10 a']['mean']:.4f} / "
                                      f"{t['sampled hit@10 b']['mean']:.4f}",
            "relative": f"{t['sampled hit@10 relative']:+.1%}",
            "A - B [users' 95%] [seeds' 95%]": _interval(t["sampled hit@10 difference"]),
            "test full NDCG@10 A - B": _interval(t["full ndcg@10 difference"]),
            "valid 1+99 Hit@10 relative": f"{r['valid']['sampled hit@10 relative']:+.1%}",
        })  # fmt: skip
    gaps = d.get("missing", [])
    missing = f"\n\nNot measured yet (no runs): {'; '.join(gaps)}." if gaps else ""
    origins = [o for r in d["rows"] for o in (r.get("run_provenance") or [None])]
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]}; {d['dataset']}, seeds "
        f"{d['seeds']})\n{code_line(origins)}\n\n" + _md(rows, list(rows[0])) + missing + "\n"
    )


def protocol_calibration(path: Path) -> str:
    """Fusion weights chosen by each validation figure, and what they give on test."""
    d = _json(path)
    runs = d["runs"]
    origins = [r["provenance"] for r in runs]
    names = [row["choice"] for row in runs[0]["rows"]]
    rows = []
    for name in names:
        cells = [next(x for x in r["rows"] if x["choice"] == name) for r in runs]

        def mean(part: str, protocol: str, metric: str, cells: list = cells) -> str:
            return f"{sum(c[part][protocol][metric] for c in cells) / len(cells):.4f}"

        rows.append({
            "weights chosen by (validation)": _mark(name, origins),
            "valid 1+99 Hit@10": mean("valid", SAMPLED_99, "hit@10"),
            "test 1+99 Hit@10": mean("test", SAMPLED_99, "hit@10"),
            "test full NDCG@10": mean("test", "full", "ndcg@10"),
            "SASRec / prior / popularity weights by seed": ", ".join(
                "/".join(f"{c[k]:g}" for k in ("sasrec_weight", "prior_weight",
                                                 "popularity_weight")) for c in cells),
        })  # fmt: skip
    return (
        f"`.venv/bin/python {d['provenance']['command']}` ({d['dataset']}, {len(runs)} seeds; "
        f"means over the seeds)\n{code_line(origins)}\n\n" + _md(rows, list(rows[0])) + "\n"
    )


def _fmt_param(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)


def synth(path: Path) -> str:
    d = _json(path)
    quality = _md(
        [{"model": r["model"], "NDCG@10": f"{r['ndcg@10']:.4f}", "Hit@10": f"{r['hit@10']:.4f}"}
         for r in d["quality"]],
        ["model", "NDCG@10", "Hit@10"],
    )  # fmt: skip
    cost = _md(
        [{"interactions": f"{c['interactions']:,}", "users": f"{c['users']:,}",
          "items": f"{c['items']:,}", "seconds": f"{c['seconds']:.1f}",
          "peak RSS (MiB)": f"{c['peak_rss_mib']:,}"} for c in d["cost"]],
        ["interactions", "users", "items", "seconds", "peak RSS (MiB)"],
    )  # fmt: skip
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]})\n"
        f"{code_line([d.get('provenance')])}\n\n{quality}\n\n{cost}\n"
    )


def sasrec_profile(path: Path) -> str:
    """The profile of one epoch, before and after (each label's own code)."""
    d = _json(path)
    blocks = []
    for label in sorted(d, key=lambda k: (k != "before", k)):
        p = d[label]
        code = p["provenance"]["code"]
        where = f"commit {str(code.get('commit'))[:10]}, source hash {code['source_hash']}"
        rows = [
            {"operator": f"`{r['op']}`", "self ms": f"{r['self_ms']:.0f}",
             "calls": f"{r['calls']:,}", "share": f"{r['share']:.0%}"}
            for r in p["top"]
        ]  # fmt: skip
        blocks.append(
            f"**{label}** ({where}): the profiled epoch took {p['epoch_seconds_profiled']:.2f} s, "
            f"{p['self_cpu_ms'] / 1000:.2f} s of operator self time "
            f"({p['threads']} threads).\n\n" + _md(rows, ["operator", "self ms", "calls", "share"])
        )
    command = next(iter(d.values()))["command"]
    return (
        f"`.venv/bin/python {command} --label LABEL` (see its docstring)\n\n"
        + "\n\n".join(blocks)
        + "\n"
    )


def scale(path: Path) -> str:
    d = _json(path)

    def cell(r: dict[str, Any], key: str, spec: str) -> str:
        return "—" if r.get(key) is None else format(r[key], spec)

    rows = [
        {"interactions": f"{r['interactions']:,}", "items": f"{r['items']:,}",
         "users": f"{r['users']:,}", "generate (s)": cell(r, "generate_seconds", ".1f"),
         "prepare (s)": cell(r, "prepare_seconds", ".1f"),
         "prepare peak RSS (MiB)": cell(r, "prepare_peak_rss_mib", ",.0f"),
         "train epoch (s)": cell(r, "epoch_seconds", ".0f"),
         "evaluate (s)": cell(r, "eval_seconds", ".0f"),
         "peak RSS (MiB)": cell(r, "peak_rss_mib", ",.0f"),
         "valid NDCG@10": cell(r, "valid_ndcg@10", ".4f")}
        for r in d["rows"]
    ]  # fmt: skip
    columns = list(rows[0]) if rows else []
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]})\n"
        f"{code_line([d.get('provenance')])}\n\n{_md(rows, columns)}\n\n"
        "![Train epoch and evaluation time, and peak RSS, against interactions]"
        "(results/scale.png)\n"
    )


def ann_serving(path: Path) -> str:
    d = _json(path)
    rows = [
        {"index": f"`{r['index']}`", "GET p50 (ms)": f"{r['p50_ms']:.2f}",
         "GET p99 (ms)": f"{r['p99_ms']:.2f}",
         "server peak RSS (MiB)": f"{r['server_peak_rss_mib']:,}"}
        for r in d["serving"]
    ]  # fmt: skip
    return (
        f"`.venv/bin/python {d['command']}` ({d['time'][:10]})\n"
        f"{code_line([d.get('provenance')])}\n\n"
        f"{d['items']:,} items, {d['users']:,} users: **recall@10 of `--index ann` against "
        f"exact {d['recall@10']:.4f}** over {d['users_checked']:,} "
        f"users ({d['index_lists']:,} inverted lists, {d['index_probe']} probed, "
        f"{d['candidates']} candidates per branch; the index holds {d['index_mib']:,.0f} MiB and "
        f"took {d['load_and_build_seconds']:.0f} s to load and build with the run).\n\n"
        f"{_md(rows, list(rows[0]))}\n"
    )


def cold_start(path: Path) -> str:
    """Every model on one split by group (benchmarks/cold_start.py): test NDCG@10 and Hit@10
    (mean over seeds), the validation cold figure that chose the fused model's rival, and the
    paired differences."""
    data = _json(path)
    origin = data.get("provenance")
    seeds = data["seeds"]
    first = data["rows"][0]["test"]
    groups = [g for g in ("all", "warm", "cold", "tail", "head", "short", "long") if g in first]
    rows = []
    for r in data["rows"]:
        row: dict[str, Any] = {"model": _mark(r["label"], [origin])}
        for g in groups:
            cell = r["test"][g]
            if "ndcg@10" not in cell:
                row[f"{g} ({first[g]['users']})"] = ""
                continue
            spread = f" ± {cell['ndcg@10 sd']:.4f}" if len(seeds) > 1 else ""
            figure = f"{cell['ndcg@10']:.4f}{spread} / {cell['hit@10']:.3f}"
            row[f"{g} ({first[g]['users']})"] = figure
        cold = r["valid"].get("cold", {})
        row["valid cold NDCG@10"] = f"{cold['ndcg@10']:.4f}" if "ndcg@10" in cold else ""
        rows.append(row)
    pairs = []
    for c in data["comparisons"]:
        seeds_ci = (
            f" [{c['seeds_low']:+.4f}, {c['seeds_high']:+.4f}]" if c["seeds_low"] is not None
            else ""
        )  # fmt: skip
        pairs.append({
            "A - B": f"{c['a']} - {c['b']}", "group": c["group"],
            "A - B [users' 95%] [seeds' 95%]": f"{c['mean']:+.4f} "
            f"[{c['users_low']:+.4f}, {c['users_high']:+.4f}]{seeds_ci}",
            "seeds A better": f"{c['seeds_better']}/{c['seeds']}",
            "B chosen by": c.get("chosen_by", ""),
        })  # fmt: skip
    head = (
        f"`.venv/bin/python {origin['command']}` ({data['scheme']} split of {data['dataset']}, "
        f"test, {data['protocol']} ranking, seeds {', '.join(map(str, seeds))}; each cell: "
        "NDCG@10" + (" ± sd over seeds" if len(seeds) > 1 else "") + " / Hit@10; users per "
        "group in the header)\n" + code_line([origin]) + "\n\n"
    )
    return head + _md(rows, list(rows[0])) + "\n\n" + _md(pairs, list(pairs[0])) + "\n"


def new_users(path: Path) -> str:
    """Test users served as new users with a few items (benchmarks/new_users.py)."""
    data = _json(path)
    origin = data.get("provenance")
    seeds = data["seeds"]
    rows = []
    for r in data["rows"]:
        cell = r["test"]["all"]
        spread = f" ± {cell['ndcg@10 sd']:.4f}" if len(seeds) > 1 else ""
        rows.append({"model": _mark(r["label"], [origin]),
                     "NDCG@10": f"{cell['ndcg@10']:.4f}{spread}",
                     "Hit@10": f"{cell['hit@10']:.4f}"})  # fmt: skip
    pairs = [
        {"A - B": f"{c['a']} - {c['b']}",
         "A - B [users' 95%] [seeds' 95%]": f"{c['mean']:+.4f} [{c['users_low']:+.4f}, "
         f"{c['users_high']:+.4f}]" + (f" [{c['seeds_low']:+.4f}, {c['seeds_high']:+.4f}]"
                                        if c["seeds_low"] is not None else ""),
         "seeds A better": f"{c['seeds_better']}/{c['seeds']}"}
        for c in data["comparisons"]
    ]  # fmt: skip
    head = (
        f"`.venv/bin/python {origin['command']}` ({data['users']} test users of the "
        f"{data['scheme']} split of {data['dataset']}, each with only their last "
        f"{data['history']} items, as users the model has never seen; {data['protocol']} "
        f"ranking, seeds {', '.join(map(str, seeds))})\n" + code_line([origin]) + "\n\n"
    )
    return head + _md(rows, list(rows[0])) + "\n\n" + _md(pairs, list(pairs[0])) + "\n"


def add_items(path: Path) -> str:
    """POST /items on a running service, one row per run (benchmarks/add_items.py)."""
    lines = _jsonl(path)
    rows = [
        {"model": _mark(f"{d['model']} ({Path(d['run']).name})", [d.get("provenance")]),
         "encoder": d.get("encoder") or "torch (older code)",
         "POST /items p50 / p99 (ms)": f"{d['p50_ms']:.1f} / {d['p99_ms']:.1f}",
         "items": str(d["items_posted"]),
         "duplicate id": f"HTTP {d['duplicate_status']}",
         "twin of a one-item history: top-1 / top-10": f"{d['twin_top1']:.0%} / "
         f"{d['twin_top10']:.0%} of {d['probes']}",
         "items after a restart / expected": f"{d['items_after_restart']} / "
         f"{d['items_expected']}"}
        for d in lines
    ]  # fmt: skip
    origins = [d.get("provenance") for d in lines]
    head = (
        _commands([d["provenance"] for d in lines]) + f" ({lines[0]['dataset']}, "
        f"{lines[0]['cpus']} CPUs, {lines[0].get('cpu') or 'CPU unknown'}, the service's "
        "defaults but where the command names the encoder runtime or precision; target: p50 <= "
        "50 ms)\n" + code_line(origins) + "\n\n"
    )
    return head + _md(rows, list(rows[0])) + "\n"


def seen_items(path: Path) -> str:
    """Each model's 1+99 figures with the user's own items scored or ranked last, and under
    sampled:99; the paired test Hit@10 intervals."""
    out = []
    for dataset, d in _json(path).items():
        origins = [d["provenance"]]
        rows = []
        for name, parts in d["models"].items():
            row: dict[str, str] = {"model": _mark(name, origins)}
            for part in ("valid", "test"):
                for case in ("scored", "last", "sampled:99"):
                    cell = parts[part][case]
                    row[f"{part} {case}"] = f"{cell['hit@10']:.4f} / {cell['ndcg@10']:.4f}"
            rows.append(row)
        diffs = "\n".join(
            f"- test Hit@10, {label}: {_interval(diff)}"
            for label, diff in d["test_hit10_intervals"].items()
        )
        seeds = ", ".join(str(s) for s in d["seeds"])
        out.append(
            f"`.venv/bin/python {d['provenance']['command']}` ({dataset}; fused and SASRec: "
            f"means over seeds {seeds}; Hit@10 / NDCG@10; scored and last under {SAMPLED_99})\n"
            f"{code_line(origins)}\n\n" + _md(rows, list(rows[0])) + "\n\n"
            "Paired differences, mean [users' 95%] [seeds' 95%]:\n\n" + diffs + "\n"
        )
    return "\n".join(out)


def refit(path: Path) -> str:
    """The chosen checkpoint against the refit model of the same runs, on test
    (benchmarks/refit.py): mean ± sd over seeds and the paired difference per metric."""
    data = _json(path)
    origins = [data["provenance"]]
    rows = []
    for r in data["rows"]:
        for case in r["cases"]:
            row: dict[str, str] = {
                "config": _mark(r["config"], origins),
                "protocol": "1+99" if case["protocol"] == SAMPLED_99 else case["protocol"],
            }
            for metric in ("ndcg@10", "hit@10"):
                cell = case[metric]
                label = metric.replace("ndcg", "NDCG").replace("hit", "Hit")
                row[f"{label} chosen"] = _mean_sd(cell["chosen"])
                row[f"{label} refit"] = _mean_sd(cell["refit"])
                row[f"{label} refit - chosen [users' 95%] [seeds' 95%]"] = _interval(
                    cell["difference"]
                )
            row["epochs refit (per seed)"] = "; ".join(
                "/".join(str(e) for e in epochs) for epochs in r["epochs"]
            )
            rows.append(row)
    seeds = ", ".join(str(s) for s in data["rows"][0]["seeds"]) if data["rows"] else ""
    part = "test"
    if data.get("scheme", "leave-one-out") == "rehearsal":
        part = "split rehearsal, test: leave-one-out's validation targets"
    head = (
        f"`.venv/bin/python {data['provenance']['command']}` ({data['dataset']}, {part}, seeds "
        f"{seeds}; mean ± sd over seeds; a staged run's epochs per stage)\n"
        + code_line(origins)
        + "\n\n"
    )
    groups = [
        {
            "config": _mark(r["config"], origins),
            "group (users)": f"{group} ({cell['users']})",
            "NDCG@10 chosen": _mean_sd(cell["chosen"]),
            "NDCG@10 refit": _mean_sd(cell["refit"]),
            "refit - chosen [users' 95%] [seeds' 95%]": _interval(cell["difference"]),
        }
        for r in data["rows"]
        for group, cell in r.get("groups", {}).items()
    ]
    by_group = (
        f"\nBy group of users ({part}, full ranking; eval/groups.py, from the run's own "
        "training part):\n\n" + _md(groups, list(groups[0])) + "\n"
        if groups
        else ""
    )
    return head + _md(rows, list(rows[0]) if rows else []) + "\n" + by_group


def logit_adjust(path: Path) -> str:
    """Validation NDCG@10 by group for each logit-adjustment tau (benchmarks/logit_adjust.py),
    and the rare-item bonus trade-off of each run."""
    data = _json(path)
    origins = [data["provenance"]]
    users = data["users"]
    groups = [g for g in ("all", "tail", "head", "short", "long") if g in users]
    rows = []
    for r in data["rows"]:
        chosen = r["tau"] is not None and data["chosen"].get(r["model"]) == r["tau"]
        tau = "" if r["tau"] is None else f"{r['tau']:g}" + (" (chosen)" if chosen else "")
        row: dict[str, str] = {"model": _mark(r["model"], origins), "tau": tau}
        for g in groups:
            row[f"{g} ({users[g]})"] = f"{r['valid'][g]:.4f}"
        for bonus, cell in r["bonus"].items():
            row[f"rare bonus {bonus}: tail / head"] = f"{cell['tail']:.4f} / {cell['head']:.4f}"
        rows.append(row)
    columns = list(max(rows, key=len))
    for row in rows:
        for c in columns:
            row.setdefault(c, "")
    head = (
        f"`.venv/bin/python {data['provenance']['command']}` ({data['scheme']} split of "
        f"{data['dataset']}, validation, {data['protocol']} ranking, seed {data['seed']}; "
        "NDCG@10; users per group in the header; tau chosen by all users' NDCG@10)\n"
        + code_line(origins)
        + "\n\n"
    )
    return head + _md(rows, columns) + "\n" + _exposure(data.get("exposure", {}))


def _exposure(exposure: dict[str, Any]) -> str:
    """The declared rare-item exposure rule's validation choice and its test measurement."""
    if "tau" not in exposure:
        return ""
    valid = exposure["valid"]
    text = (
        f"\nExposure rule (validation: the cheapest setting in head NDCG@10 whose tail beats "
        f"text-kNN's {exposure['rival_valid_tail']:.4f}): tau {exposure['tau']:g}, rare bonus "
        f"{exposure['bonus']:g}, validation tail {valid['tail']:.4f}, head {valid['head']:.4f}.\n"
    )
    test = exposure.get("test")
    if not test:
        return text
    groups = ("all", "tail", "head", "cold", "short")
    first = test["rows"]["exposure"]
    rows = []
    for name, cells in test["rows"].items():
        row = {"test (seeds " + ", ".join(map(str, test["seeds"])) + ")": name}
        for g in groups:
            cell = cells[g]
            row[f"{g} ({first[g]['users']})"] = (
                f"{cell['ndcg@10']:.4f} ± {cell['ndcg@10 sd']:.4f}" if "ndcg@10" in cell else ""
            )
        rows.append(row)
    pairs = _pair_rows(test["comparisons"], "exposure")
    return text + "\n" + _md(rows, list(rows[0])) + "\n\n" + _md(pairs, list(pairs[0])) + "\n"


def _pair_rows(comparisons: list[dict[str, Any]], a: str | None = None) -> list[dict[str, str]]:
    """Paired differences by group, a row each (A: ``a``, or each comparison's own)."""
    return [
        {"A - B": f"{a or c['a']} - {c['b']}", "group": c["group"],
         "A - B [users' 95%] [seeds' 95%]": _interval(c),
         "seeds A better": f"{c['seeds_better']}/{c['seeds']}"}
        for c in comparisons
    ]  # fmt: skip


RARE_LABELS = {
    "ur4rec-default": "UR4Rec, fused (the main job's config)",
    "calibrated": "+ co-occurrence, weights by all users' NDCG@10",
    "exposure": "+ co-occurrence, exposure rule",
    "rp3beta": "RP3beta alone (the branch's own ranking)",
    "text-knn": "text-kNN (template texts)",
}


def rare_items(path: Path) -> str:
    """UR4Rec with its co-occurrence branch by group (benchmarks/rare_items.py): the weights
    each seed's validation chose, test NDCG@10 / Hit@10, and the paired differences."""
    data = _json(path)
    origins = [data["provenance"]]
    seeds = data["seeds"]
    first = data["rows"]["ur4rec-default"]
    groups = [g for g in ("all", "warm", "cold", "tail", "head", "short", "long") if g in first]
    rows = []
    for name, cells in data["rows"].items():
        row: dict[str, Any] = {"model": _mark(RARE_LABELS.get(name, name), origins)}
        for g in groups:
            cell = cells[g]
            spread = f" ± {cell['ndcg@10 sd']:.4f}" if cell.get("ndcg@10 sd") else ""
            row[f"{g} ({first[g]['users']})"] = (
                f"{cell['ndcg@10']:.4f}{spread} / {cell['hit@10']:.3f}" if "ndcg@10" in cell else ""
            )
        rows.append(row)

    def weights(c: dict[str, float]) -> str:
        return f"{c['cooccurrence_weight']:g} / {c['rare_weight']:g} / {c['rare_bonus']:g}"

    choices = [
        {"seed": str(c["seed"]),
         "by all users: weights": weights(c["calibrated"]["chosen"]),
         "valid all / tail / head": "{all:.4f} / {tail:.4f} / {head:.4f}".format(
             **c["calibrated"]["valid"]),
         "exposure rule: weights": weights(c["exposure"]["chosen"]),
         "valid all / tail / head ": "{all:.4f} / {tail:.4f} / {head:.4f}".format(
             **c["exposure"]["valid"]),
         "settings past text-kNN": f"{c['passing']} of {c['grid']}"}
        for c in data["choices"]
    ]  # fmt: skip
    pairs = _pair_rows(data["comparisons"])
    rival = data["rival_valid"]["tail"]
    frontier = [
        {"seed": str(c["seed"]),
         "text-kNN weight / new-item bonus": f"{f['knn_weight']:g} / {f['new_bonus']:g}",
         "settings past text-kNN": f"{f['passing']} of {c['grid']}",
         "exposure rule: weights": weights(f["chosen"]) if f["chosen"] else "none passes",
         "valid all / tail / head / cold": "{all:.4f} / {tail:.4f} / {head:.4f} / {cold:.4f}"
         .format(**f["valid"]) if f["valid"] else "",
         "best valid all": f"{f['best_all']:.4f}"}
        for c in data["choices"] for f in c.get("text_knn_frontier", [])
    ]  # fmt: skip
    head = (
        f"`.venv/bin/python {data['provenance']['command']}` ({data['scheme']} split of "
        f"{data['dataset']}, test, {data['protocol']} ranking, seeds "
        f"{', '.join(map(str, seeds))}; each cell: NDCG@10 ± sd over seeds / Hit@10; users per "
        "group in the header; weights: every item / rare items / rare bonus, chosen on each "
        f"seed's validation part; text-kNN's validation tail: {rival:.4f})\n"
        + code_line(origins)
        + "\n\n"
    )
    return (
        head
        + _md(choices, list(choices[0]))
        + "\n\n"
        + _md(rows, list(rows[0]))
        + "\n\n"
        + _md(pairs, list(pairs[0]))
        + "\n"
        + (
            "\nValidation only: text-kNN's z-score on rare and new items added to every "
            "co-occurrence setting, the exposure rule applied again (benchmarks/rare_items.py)."
            "\n\n" + _md(frontier, list(frontier[0])) + "\n"
            if frontier
            else ""
        )
    )


TABLES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "rare-items": ("rare-items.json", rare_items),
    "new-users": ("new-users-leave-one-out.json", new_users),
    "add-items": ("add-items.jsonl", add_items),
    "cold-items": ("cold-start-cold-items.json", cold_start),
    "cold-time": ("cold-start-cold-time.json", cold_start),
    "cold-loo": ("cold-start-leave-one-out.json", cold_start),
    "logit-adjust": ("logit-adjust.json", logit_adjust),
    "refit": ("refit.json", refit),
    "refit-rehearsal": ("refit-rehearsal.json", refit),
    "refit-fresh": ("refit-fresh.json", refit),
    "refit-rehearsal-ml-100k": ("refit-rehearsal-ml-100k.json", refit),
    "refit-fresh-ml-100k": ("refit-fresh-ml-100k.json", refit),
    "serve-load": ("serve-load.json", serve_load),
    "encoder-precision": ("encoder-precision.json", encoder_precision),
    "backbones": ("backbones.jsonl", backbones),
    "baselines": ("baselines.json", baselines),
    "ease-sweep": ("baselines.json", ease_sweep),
    "rp3beta-sweep": ("baselines.json", rp3beta_sweep),
    "rp3beta-window": ("baselines.json", rp3beta_window),
    "ur4rec-quality": ("ur4rec-quality.jsonl", ur4rec_quality),
    "comparisons": ("comparisons.jsonl", comparisons),
    "sasrec-speed": ("sasrec-speed.json", sasrec_speed),
    "import-speed": ("import-speed.json", import_speed),
    "synth": ("synth.json", synth),
    "embedding-store": ("embedding-store.json", embedding_store),
    "tune-search": ("tune-search.json", tune_search),
    "report-estimates": ("report-estimates.json", report_estimates),
    "protocol-calibration": ("protocol-calibration.json", protocol_calibration),
    "seen-items": ("seen-items.json", seen_items),
    "sasrec-profile": ("sasrec-profile.json", sasrec_profile),
    "scale": ("scale.json", scale),
    "ann-serving": ("ann-serving.json", ann_serving),
    "sasrec-sweep": ("sasrec-sweep.json", sasrec_sweep),
    "ensemble": ("ensemble.json", ensemble),
    "headline": ("ur4rec-quality.jsonl", headline),
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
    parser.add_argument("--doc", action="append", help="a document (default: " + ", ".join(
        str(d.relative_to(ROOT)) for d in DOCS) + ")")  # fmt: skip
    args = parser.parse_args()
    stale = []
    for doc in [Path(d) for d in args.doc] if args.doc else DOCS:
        text = doc.read_text(encoding="utf-8")
        new = render(text)
        if new != text:
            stale.append(doc)
            if not args.check:
                doc.write_text(new, encoding="utf-8")
        print(f"{doc}: {len(BLOCK.findall(new))} generated tables" + (
            " (out of date)" if args.check and new != text else ""))  # fmt: skip
    if args.check and stale:
        print(f"run {Path(__file__).name} to update {', '.join(str(d) for d in stale)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
