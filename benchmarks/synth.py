"""The synthetic generator: does order matter and does text carry signal, and what it costs.

    .venv/bin/python benchmarks/synth.py [--sizes 1000000,10000000] [--json]

Quality: `ur4rec data synth syn --users 2000 --items 1000 --interactions 100000 --seed 1`,
then popularity, EASE (lambda chosen on validation) and text-kNN (`ur4rec baseline`), and
SASRec (configs/sasrec-ml-100k.yaml, 15 epochs), all on the test part under full ranking.
Cost: `ur4rec data synth` at each size (users = size / 100, items = size / 100), wall time and
peak RSS of the process (writing the prepared folder included), measured first and in rising
sizes, so the children's peak so far is each size's own. Writes docs/results/synth.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from reuse import command_line, result_provenance
from ur4rec.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "synth.json"


def ur4rec(*args: str, data: str) -> dict:
    cmd = [sys.executable, "-m", "ur4rec.cli", *args, "--data-dir", data, "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "CI": ""})
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout)


def cost(size: int, data: str) -> dict:
    start = time.perf_counter()
    ur4rec("data", "synth", f"size-{size}", "--users", str(size // 100), "--items",
           str(size // 100), "--interactions", str(size), "--seed", "0", data=data)  # fmt: skip
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "interactions": size, "users": size // 100, "items": size // 100,
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak / 1024),
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000000,10000000")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", default=str(OUT))
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory() as data:
        # First, in rising sizes: the children's peak RSS so far is then this size's own.
        costs = [cost(size, data) for size in sizes]
        ur4rec("data", "synth", "syn", "--users", "2000", "--items", "1000", "--interactions",
               "100000", "--seed", "1", data=data)  # fmt: skip
        rows = []
        for model in ("pop", "ease", "text-knn"):
            r = ur4rec("baseline", model, "--dataset", "syn", data=data)
            rows.append({"model": model, "ndcg@10": r["ndcg@10"], "hit@10": r["hit@10"]})
        run = Path(data) / "sasrec"
        config = ROOT / "configs" / "sasrec-ml-100k.yaml"
        summary = ur4rec(
            "train", "--config", str(config), "--set", "data.dataset=syn",
            "--set", "train.epochs=15", "--out", str(run), "--quiet", data=data,
        )  # fmt: skip
        test = summary["test"]
        rows.append({"model": "sasrec", "ndcg@10": test["ndcg@10"], "hit@10": test["hit@10"]})
    result = {
        "command": command_line(__file__),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "quality": rows,
        "cost": costs,
        "provenance": result_provenance(command_line(__file__)),
    }
    atomic_write_json(Path(args.results), result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for row in rows:
            print(f"{row['model']:<9} NDCG@10 {row['ndcg@10']:.4f}  Hit@10 {row['hit@10']:.4f}")
        for c in costs:
            print(f"synth {c['interactions']:>11,}: {c['seconds']} s, {c['peak_rss_mib']} MiB")
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
