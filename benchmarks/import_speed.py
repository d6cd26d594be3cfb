"""`ur4rec data import` on a large CSV log: wall time and peak memory of the whole command.

    .venv/bin/python benchmarks/import_speed.py [--rows 10000000] [--json]

Writes a synthetic log (user_id, item_id, rating, timestamp; Zipf-like item popularity, with
repeated events and ratings 1-5) and an item table (title, description, categories) once
under runs/import-bench/, then times `ur4rec data import` in a fresh process with
`--rating-col rating --min-rating 1 --min-user-interactions 5 --min-item-interactions 5`.
Peak RSS is the child process's (getrusage). The target: 10M rows in under 2 minutes and under
4 GiB on 2 cores. Writes docs/results/import-speed.json.
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

import numpy as np
import polars as pl

from reuse import command_line, result_provenance
from ur4rec.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "runs" / "import-bench"
OUT = ROOT / "docs" / "results" / "import-speed.json"


def write_log(rows: int, users: int, items: int, seed: int = 0) -> tuple[Path, Path]:
    WORK.mkdir(parents=True, exist_ok=True)
    log, table = WORK / f"log-{rows}.csv", WORK / f"items-{items}.csv"
    rng = np.random.default_rng(seed)
    if not log.is_file():
        user = rng.integers(0, users, rows)
        item = np.minimum(rng.zipf(1.3, rows) - 1, items - 1)  # a long tail
        stamp = 1_600_000_000 + rng.integers(0, 3 * 365 * 86400, rows)
        rating = rng.integers(1, 6, rows)
        frame = pl.DataFrame(
            {
                "user_id": pl.Series(user).cast(pl.String).str.pad_start(7, "0"),
                "item_id": pl.Series(item).cast(pl.String),
                "rating": rating,
                "timestamp": stamp,
            }
        )
        tmp = log.with_suffix(".tmp")
        pl.concat([frame, frame[: rows // 100]]).write_csv(tmp)  # 1% logged twice
        os.replace(tmp, log)
    if not table.is_file():
        ids = np.arange(items)
        frame = pl.DataFrame(
            {
                "item_id": ids,
                "title": [f"Product {i}" for i in ids],
                "description": [
                    f"Item {i} of the synthetic catalogue, line {i % 97}." for i in ids
                ],
                "category": [f"cat{i % 40}|group{i % 7}" for i in ids],
            }
        )
        frame.write_csv(table)
    return log, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", default=str(OUT))
    args = parser.parse_args()
    log, table = write_log(args.rows, args.users, args.items)
    with tempfile.TemporaryDirectory() as data:
        cmd = [
            sys.executable, "-m", "ur4rec.cli", "data", "import", "bench",
            "--interactions", str(log), "--items", str(table), "--rating-col", "rating",
            "--min-rating", "1", "--min-user-interactions", "5", "--min-item-interactions", "5",
            "--title-col", "title", "--text-cols", "description", "--category-col", "category",
            "--domain", "products", "--json", "--data-dir", data,
        ]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"import failed: {done.stderr.strip()}")
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    manifest = json.loads(done.stdout)
    result = {
        "command": command_line(__file__),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": manifest["rows_read"],
        "file_mib": round(log.stat().st_size / 2**20, 1),
        "table_items": args.items,
        "counts": manifest["counts"],
        "dropped": manifest["dropped"],
        "seconds": round(seconds, 1),
        "peak_rss_mib": round(peak_kib / 1024, 0),
        "cpus": os.cpu_count(),
        "target": "10M rows: < 120 s and < 4096 MiB peak RSS",
        "provenance": result_provenance(command_line(__file__)),
    }
    atomic_write_json(Path(args.results), result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"imported {result['rows']:,} rows ({result['file_mib']} MiB CSV) in "
            f"{result['seconds']} s, peak RSS {result['peak_rss_mib']:.0f} MiB -> "
            f"{result['counts']['users']:,} users, {result['counts']['items']:,} items, "
            f"{result['counts']['interactions']:,} interactions"
        )
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
