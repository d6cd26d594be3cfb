"""A hyperparameter search with `ur4rec tune`, recorded: its trials, the best values, the time.

    .venv/bin/python benchmarks/tune_search.py --config configs/sasrec-ml-100k-liked.yaml \
        --space configs/tune/sasrec.yaml --trials 16 --jobs 2 --out runs/tune-sasrec-liked

Runs (or resumes: the study lives in OUT/study.db) `ur4rec tune` in a subprocess, then writes
its trials and best values to docs/results/tune-search.json (one entry per config and space,
replaced when rerun). Values are validation metrics only; the test split is never read.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from reuse import command_line, result_provenance
from ur4rec.io import atomic_write_json
from ur4rec.provenance import text_hash

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "tune-search.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", required=True)
    parser.add_argument("--space", required=True)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True)
    parser.add_argument("--results", default=str(OUT))
    args = parser.parse_args()
    cmd = [
        sys.executable, "-m", "ur4rec.cli", "tune", "--config", args.config, "--space",
        args.space, "--trials", str(args.trials), "--jobs", str(args.jobs), "--seed",
        str(args.seed), "--out", args.out, "--quiet", "--json",
    ]  # fmt: skip
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ur4rec tune failed: {done.stderr.strip()[-2000:]}")
    result = json.loads(done.stdout)
    summary = json.loads((Path(args.out) / "tune.json").read_text(encoding="utf-8"))
    command = command_line(__file__)
    config_text = Path(args.config).read_text(encoding="utf-8")
    entry = {
        "config": args.config,
        "space": args.space,
        "metric": summary["metric"],
        "trials": result["trials"],
        "best": result["best"],
        "states": summary["states"],
        "seconds_this_call": round(seconds, 1),
        "trial_seconds": round(sum(t.get("seconds") or 0 for t in result["trials"]), 1),
        "command": command,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "provenance": result_provenance(command, [text_hash(config_text)]),
    }
    path = Path(args.results)
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else []
    entries = [e for e in entries if (e["config"], e["space"]) != (args.config, args.space)]
    atomic_write_json(path, [*entries, entry])
    best = result["best"]
    print(
        f"{len(result['trials'])} trials ({summary['states']}); best trial {best['trial']}: "
        f"validation {summary['metric']} {best['value']:.4f} with {best['params']}"
    )
    print(f"wrote {path}; best config {Path(args.out) / 'best.yaml'}")


if __name__ == "__main__":
    main()
