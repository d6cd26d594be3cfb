"""Backbones side by side: configs x seeds, each trained into its own run folder, then measured
on valid and test under the full and the 1+99 sampled (`seed`) protocols.

    .venv/bin/python benchmarks/backbones.py --seeds 42,43,44 \\
        --configs gru4rec-ml-100k-liked,ur4rec-gru4rec-ml-100k-liked,gru4rec-ml-100k

Each run is `ur4rec train --config configs/NAME.yaml --set seed=S` in a subprocess
(``--parallel`` at once, ``--threads`` torch threads each) into OUT/NAME-sS; a finished run
is measured again, not retrained, and an interrupted one resumes, but only when it is a run of
the current code, the same config and data (benchmarks/reuse.py; anything else is set aside
and retrained). A current run of the same config under --search is measured instead of
training another. Results are merged into --results (default docs/results/backbones.jsonl,
one row per run and case, with its provenance; benchmarks/results_doc.py makes the table in
docs/results.md from it) and the table is printed: mean and sd over seeds.
Choose by the valid columns; the test columns are for reporting.
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from reuse import (
    command_line,
    find_run,
    merge_rows,
    plan_run,
    run_provenance,
    train_in_subprocess,
    wanted_config,
)
from ur4rec.measures import SAMPLED_99

ROOT = Path(__file__).resolve().parent.parent
CASES = [(part, protocol) for part in ("valid", "test") for protocol in ("full", SAMPLED_99)]


def train(config: str, seed: int, out: Path, threads: int, search: list[Path]) -> Path:
    """A current run of configs/CONFIG.yaml with this seed: found in OUT or under --search
    (any run folder of this exact config, code and data), resumed, or trained into OUT."""
    path = ROOT / "configs" / f"{config}.yaml"
    wanted = wanted_config(path, [f"seed={seed}"])
    run_dir = out / f"{config}-s{seed}"
    plan = plan_run(run_dir, wanted)
    if plan == "reuse":
        return run_dir
    found = find_run(search, wanted) if plan == "train" else None
    if found is not None:
        print(f"{run_dir.name}: measured from {found}", flush=True)
        return found
    seconds = train_in_subprocess(run_dir, plan, path, [f"seed={seed}"], threads)
    print(f"trained {run_dir.name} in {seconds:.0f} s", flush=True)
    return run_dir


def measure(run_dir: Path) -> list[dict[str, object]]:
    from ur4rec.train.run import evaluate

    rows = []
    origin = run_provenance(run_dir)
    for part, protocol in CASES:
        result = evaluate(run_dir, protocol, part)
        rows.append({**result, "run": run_dir.name, "provenance": origin})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", required=True, help="config names under configs/, comma")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--out", default=str(ROOT / "runs" / "backbones"))
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "backbones.jsonl"))
    parser.add_argument(
        "--search",
        default=str(ROOT / "runs" / "ur4rec-quality"),
        help="comma list of folders whose run folders are measured when they hold a current "
        "run of the same config (e.g. the quality benchmark's default runs)",
    )
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    seeds = [int(s) for s in args.seeds.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(c, s) for c in configs for s in seeds]
    with ThreadPoolExecutor(args.parallel) as pool:
        search = [Path(p) for p in args.search.split(",") if p]
        runs = list(pool.map(lambda job: (job, train(*job, out, args.threads, search)), jobs))
    rows = []
    command = command_line(__file__)
    for (config, seed), run_dir in runs:
        for row in measure(run_dir):
            rows.append({"config": config, "seed": seed, "command": command, **row})
    results = Path(args.results)
    merge_rows(results, rows, ("config", "seed", "split", "protocol"))
    print(f"\n{'config':34} {'part':5} {'protocol':8} {'NDCG@10':>17} {'Hit@10':>17}  seeds")
    for config in configs:
        for part, protocol in CASES:
            cell = [r for r in rows if r["config"] == config and r["split"] == part
                    and r["protocol"] == protocol]  # fmt: skip
            ndcg = [float(r["ndcg@10"]) for r in cell]
            hit = [float(r["hit@10"]) for r in cell]
            sd = lambda v: statistics.stdev(v) if len(v) > 1 else 0.0  # noqa: E731
            print(
                f"{config:34} {part:5} {protocol:8} {statistics.mean(ndcg):.4f} ± {sd(ndcg):.4f}"
                f"  {statistics.mean(hit):.4f} ± {sd(hit):.4f}  {len(cell)}"
            )
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
