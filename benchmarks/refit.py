"""Refit (`ur4rec refit`, train.refit): what training again on the training part plus the
validation targets, for the epochs validation chose, does on test.

    .venv/bin/python benchmarks/refit.py --seeds 43,44,45 --parallel 2 --threads 1
    .venv/bin/python benchmarks/refit.py --scheme rehearsal --configs ur4rec-ml-100k-liked
    .venv/bin/python benchmarks/refit.py --scheme rehearsal --configs ur4rec-ml-100k \
        --results docs/results/refit-rehearsal-ml-100k.json

With ``--scheme rehearsal`` (data/splits.py) every run is leave-one-out one step back: its test
targets are leave-one-out's validation targets, so refit - chosen there is a validation
measurement, the one a choice of train.refit may rest on (runs in runs/refit-rehearsal,
results in docs/results/refit-rehearsal.json).

For each config (default: SASRec alone and the default UR4Rec on ml-100k-liked) and seed:
the run in OUT/NAME-sS (reused when it is a run of the current code and config, resumed or
trained otherwise; benchmarks/reuse.py), then `ur4rec refit` on it in a subprocess (a refit
already done is kept). Measured on test under the full and the 1+99 protocols: the chosen
checkpoint against the refit model of the same run, paired per user (users' and seeds' 95%
intervals, eval/compare.py). Nothing is chosen on these test figures: a choice of
train.refit rests on a rehearsal (above) alone. Writes docs/results/refit.json
(benchmarks/results_doc.py makes docs/results.md's table from it).
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
import yaml

from compare_runs import group_masks
from reuse import (
    cli_in_subprocess,
    command_line,
    plan_run,
    result_provenance,
    run_provenance,
    train_in_subprocess,
    wanted_config,
)
from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.io import atomic_write_json
from ur4rec.measures import SAMPLED_99
from ur4rec.provenance import text_hash

ROOT = Path(__file__).resolve().parent.parent
CASES = [("test", "full"), ("test", SAMPLED_99)]


def train_and_refit(config: str, seed: int, out: Path, threads: int, scheme: str) -> Path:
    path = ROOT / "configs" / f"{config}.yaml"
    run_dir = out / f"{config}-s{seed}"
    overrides = [f"seed={seed}", f"data.scheme={scheme}"]
    plan = plan_run(run_dir, wanted_config(path, overrides))
    if plan != "reuse":
        seconds = train_in_subprocess(run_dir, plan, path, overrides, threads)
        print(f"trained {run_dir.name} in {seconds:.0f} s", flush=True)
    seconds = cli_in_subprocess(
        ["refit", str(run_dir), "--quiet", "--json"], threads, f"{run_dir}: refit"
    )
    print(f"refit {run_dir.name} in {seconds:.0f} s", flush=True)
    return run_dir


def by_group(
    run_dir: Path, ranks: dict[str, list[dict[str, np.ndarray]]], draws: int
) -> dict[str, dict[str, object]]:
    """Test full NDCG@10 of the chosen and the refit models per group of users (the target's
    training interactions, the history's length; eval/groups.py), paired. The groups come
    from the run's own training part, the same for both models."""
    masks = group_masks(run_dir)["test"]
    out: dict[str, dict[str, object]] = {}
    for group, mask in masks.items():
        if group == "all" or not mask.any():
            continue
        a = np.stack([ndcg_at(r["test full"][mask]) for r in ranks["refit"]])
        b = np.stack([ndcg_at(r["test full"][mask]) for r in ranks["best"]])
        out[group] = {
            "users": int(mask.sum()),
            "refit": a.mean(axis=1).tolist(),
            "chosen": b.mean(axis=1).tolist(),
            "difference": asdict(paired_difference(a, b, draws)),
        }
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="sasrec-ml-100k-liked,ur4rec-ml-100k-liked")
    parser.add_argument("--seeds", default="43,44,45")
    parser.add_argument("--scheme", default="leave-one-out", choices=("leave-one-out", "rehearsal"))
    parser.add_argument("--out", type=Path, help="default: runs/refit[-SCHEME]")
    parser.add_argument("--results", type=Path, help="default: docs/results/refit[-SCHEME].json")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    from ur4rec.train.run import user_ranks

    suffix = "" if args.scheme == "leave-one-out" else f"-{args.scheme}"
    args.out = args.out or ROOT / "runs" / f"refit{suffix}"
    args.results = args.results or ROOT / "docs" / "results" / f"refit{suffix}.json"
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s) for c in configs for s in seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        done = pool.map(
            lambda job: train_and_refit(*job, args.out, args.threads, args.scheme), jobs
        )
        runs = dict(zip(jobs, done, strict=True))
    rows = []
    for config in configs:
        dirs = [runs[(config, s)] for s in seeds]
        ranks = {
            which: [user_ranks(d, CASES, checkpoint=which) for d in dirs]
            for which in ("best", "refit")
        }
        summaries = [json.loads((d / "summary.json").read_text()) for d in dirs]
        row: dict[str, object] = {
            "config": config,
            "seeds": seeds,
            "epochs": [s["refit"]["epochs"] for s in summaries],
            "refit_seconds": [s["refit"]["train_seconds"] for s in summaries],
            "cases": [],
        }
        for part, protocol in CASES:
            key = f"{part} {protocol}"
            case: dict[str, object] = {"split": part, "protocol": protocol}
            for metric, per_user in (("ndcg@10", ndcg_at), ("hit@10", lambda r: r < 10)):
                a = np.stack([per_user(r[key]).astype(np.float64) for r in ranks["refit"]])
                b = np.stack([per_user(r[key]).astype(np.float64) for r in ranks["best"]])
                diff = paired_difference(a, b, args.draws)
                case[metric] = {
                    "refit": a.mean(axis=1).tolist(),
                    "chosen": b.mean(axis=1).tolist(),
                    "difference": asdict(diff),
                }
                print(
                    f"{config} {key} {metric}: chosen {statistics.mean(b.mean(axis=1)):.4f}, "
                    f"refit {statistics.mean(a.mean(axis=1)):.4f}, refit - chosen {diff}"
                )
            row["cases"].append(case)  # type: ignore[union-attr]
        row["groups"] = by_group(dirs[0], ranks, args.draws)
        for group, cell in row["groups"].items():  # type: ignore[union-attr]
            print(f"{config} test full ndcg@10, {group} ({cell['users']} users): chosen "
                  f"{statistics.mean(cell['chosen']):.4f}, refit "
                  f"{statistics.mean(cell['refit']):.4f}")  # fmt: skip
        rows.append(row)
    configs_used = [(d / "config.yaml").read_text(encoding="utf-8") for d in runs.values()]
    datasets = sorted({yaml.safe_load(c)["data"]["dataset"] for c in configs_used})
    document = {
        "rows": rows,
        "dataset": ", ".join(datasets),
        "scheme": args.scheme,
        "runs": {d.name: run_provenance(d) for d in runs.values()},
        "provenance": result_provenance(
            command_line(__file__), [text_hash(c) for c in configs_used]
        ),
    }
    atomic_write_json(args.results, document)
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
