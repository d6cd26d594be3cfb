"""The training report's estimated gains against what each change measures, paired by seed.

    .venv/bin/python benchmarks/ur4rec_quality.py --seeds 43,44,45 --parallel 2 --threads 1 \\
        --variants "default,tuned,report capacity ...,..."   # the runs (ur4rec-variants.yaml)
    .venv/bin/python benchmarks/report_estimates.py --seeds 43-45

Each row compares two variants' runs of benchmarks/ur4rec_quality.py (runs/ur4rec-quality/
DATASET-VARIANT-sSEED) per user: the change's Hit@10 on the report's sampled protocol (the
target against 99 unseen items) and NDCG@10 under full ranking, A - B with a 95% interval from
resampling users and one across seeds (eval/compare.py), and the relative change in Hit@10
beside the report's estimate. Valid and test are both shown; the variants were fixed before
any of these runs, so neither is chosen on. Writes docs/results/report-estimates.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from compare_runs import CASES, parse_seeds, ranks_of
from reuse import cached_ranks, command_line, run_provenance
from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.io import atomic_write_text
from ur4rec.measures import SAMPLED_99
from ur4rec_quality import VARIANTS, slug

ROOT = Path(__file__).resolve().parent.parent

# (change, A, B, the report's estimate of the gain in Hit@10): A is the model with the change.
ROWS: list[tuple[str, str, str, str]] = [
    ("retriever capacity (dim 512, 8 experts, 8 proxies)",
     "report capacity: dim 512 / 8 experts / 8 proxies", "default", "+10-15%"),
    ("LR schedule (warmup + cosine against constant)",
     "default", "constant learning rate", "+5-8%"),
    ("learned fusion (calibrated scalar against fixed 0.4/0.6)",
     "default", "fusion fixed 0.4/0.6 (report) with the prior", "+5-10%"),
    ("text encoder fine-tuning (last layer, lr 1e-5)",
     "report encoder fine-tuning: last layer at 1e-5", "default", "+8-12%"),
    ("harder negatives (50 mined + 50 uniform)",
     "report negatives: 50 mined + 50 uniform", "default", "+5-8%"),
    ("SASRec's searched settings (the variant tuned)",
     "tuned", "default", "(not in the report)"),
]  # fmt: skip


def _mean_sd(values: list[float]) -> dict[str, float]:
    return {"mean": statistics.mean(values),
            "sd": statistics.stdev(values) if len(values) > 1 else 0.0}  # fmt: skip


def compare(a: list[dict[str, np.ndarray]], b: list[dict[str, np.ndarray]]) -> dict[str, Any]:
    """Per part: sampled Hit@10 and full NDCG@10 of A and B, and their paired differences."""
    out: dict[str, Any] = {}
    for part in ("valid", "test"):
        sampled, full = f"{part} {SAMPLED_99}", f"{part} full"
        hit_a = np.stack([(r[sampled] < 10).astype(np.float64) for r in a])
        hit_b = np.stack([(r[sampled] < 10).astype(np.float64) for r in b])
        ndcg_a = np.stack([ndcg_at(r[full]) for r in a])
        ndcg_b = np.stack([ndcg_at(r[full]) for r in b])
        out[part] = {
            "sampled hit@10 a": _mean_sd(hit_a.mean(axis=1).tolist()),
            "sampled hit@10 b": _mean_sd(hit_b.mean(axis=1).tolist()),
            "sampled hit@10 relative": float(hit_a.mean() / hit_b.mean() - 1.0),
            "sampled hit@10 difference": asdict(paired_difference(hit_a, hit_b)),
            "full ndcg@10 a": _mean_sd(ndcg_a.mean(axis=1).tolist()),
            "full ndcg@10 b": _mean_sd(ndcg_b.mean(axis=1).tolist()),
            "full ndcg@10 difference": asdict(paired_difference(ndcg_a, ndcg_b)),
        }
    return out


def _earlier_rows(path: Path, dataset: str, seeds: str) -> dict[str, dict[str, Any]]:
    """The rows of an earlier record for the same dataset and seeds, by change: a rerun
    without some variants' run folders keeps what was measured before instead of dropping it."""
    if not path.is_file():
        return {}
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        msg = f"{path} is not valid JSON ({exc}); move it aside to start afresh"
        raise SystemExit(msg) from exc
    if record.get("dataset") != dataset or record.get("seeds") != seeds:
        return {}
    return {row["change"]: row for row in record.get("rows", [])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="43-45")
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ur4rec-quality"))
    parser.add_argument("--data-dir")
    parser.add_argument("--results", default=str(ROOT / "docs/results/report-estimates.json"))
    parser.add_argument(
        "--as-stored", action="store_true",
        help="read finished runs of other code as they are (ranked now from their best "
        "checkpoints; the rows keep the runs' provenance) instead of training them again",
    )  # fmt: skip
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    for _, a, b, _ in ROWS:
        for name in (a, b):
            if name not in VARIANTS:
                raise SystemExit(f"unknown variant {name!r} (configs/experiments/)")

    def folder(variant: str, seed: int) -> Path:
        return Path(args.runs) / f"{args.dataset}-{slug(variant)}-s{seed}"

    earlier = _earlier_rows(Path(args.results), args.dataset, args.seeds)
    ranks: dict[str, list[dict[str, np.ndarray]]] = {}
    rows, missing = [], []
    for change, a, b, estimate in ROWS:
        absent = [str(folder(v, s)) for v in (a, b) for s in seeds
                  if not (folder(v, s) / "summary.json").is_file()]  # fmt: skip
        if absent:
            if change in earlier:  # measured by an earlier call: it stands, marked by its code
                rows.append(earlier[change])
                print(f"{change}: no runs here ({', '.join(absent)}); the earlier row is kept")
            else:
                missing.append(change)
                print(f"{change}: skipped, no finished runs in {', '.join(absent)}")
            continue
        for v in (a, b):
            if v not in ranks:
                ranks[v] = [
                    cached_ranks(folder(v, s), CASES, args.data_dir)
                    if args.as_stored
                    else ranks_of(folder(v, s), args.data_dir)
                    for s in seeds
                ]
        result = compare(ranks[a], ranks[b])
        rows.append({"change": change, "a": a, "b": b, "estimate": estimate, **result,
                     "run_provenance": [run_provenance(folder(v, s)) for v in (a, b)
                                        for s in seeds]})  # fmt: skip
        t = result["test"]
        print(f"{change}: test sampled Hit@10 {t['sampled hit@10 a']['mean']:.4f} against "
              f"{t['sampled hit@10 b']['mean']:.4f} ({t['sampled hit@10 relative']:+.1%}; "
              f"report {estimate}); full NDCG@10 difference "
              f"{t['full ndcg@10 difference']['mean']:+.4f}")  # fmt: skip
    if not rows:
        raise SystemExit("no comparison had its runs; run benchmarks/ur4rec_quality.py first")
    record = {"dataset": args.dataset, "seeds": args.seeds, "rows": rows, "missing": missing,
              "command": command_line(__file__),
              "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    atomic_write_text(Path(args.results), json.dumps(record, indent=1) + "\n")
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
