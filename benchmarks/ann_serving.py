"""Serving a 10^6-item catalogue: the faiss index against exact scoring.

    .venv/bin/python benchmarks/ann_serving.py [--items 1000000] [--requests 1000] [--json]

Makes `ur4rec data synth ann-1m --users 20000 --items 1000000 --interactions 1000000 --seed 0`
and trains SASRec on it for one epoch (benchmarks/scale.py's settings: the mixed sampled
softmax; quality does not matter here, the catalogue's size does), both kept under
runs/ann-bench/. Then:
- recall@10 of `--index ann` against `--index exact` (the same model, the same users: the
  share of exact serving's top 10 that ANN serving returns), over 1,000 random known users;
- `ur4rec serve RUN --index ann` and `--index exact` in their own processes: GET
  /users/{id}/recommendations?k=10 for random known users, sequentially over one keep-alive
  connection (after 100 warm-up requests), p50 / p99; the server's peak RSS and the index's
  own size.
Writes docs/results/ann-serving.json.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import time
from pathlib import Path

from reuse import command_line, result_provenance
from serve_latency import free_port, percentile, timed_requests, wait_for_health
from ur4rec.io import atomic_write_json
from ur4rec.provenance import text_hash

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "runs" / "ann-bench"
OUT = ROOT / "docs" / "results" / "ann-serving.json"


def trained_run(items: int) -> tuple[Path, str]:
    from scale import OVERRIDES
    from ur4rec.config import load_config
    from ur4rec.data.prepare import save_imported
    from ur4rec.data.synth import SynthSpec, synthesise
    from ur4rec.train import run

    data, name = str(WORK / "data"), f"ann-{items}"
    out = WORK / name
    if (out / "summary.json").is_file():
        return out, data
    if not (WORK / "data" / "prepared" / name).is_dir():
        spec = SynthSpec(name, users=20_000, items=items, interactions=1_000_000, seed=0)
        save_imported(synthesise(spec), data)
    cfg = load_config(None, [f"data.dataset={name}", *OVERRIDES])
    print(f"training {out} (one epoch)", flush=True)
    return run.train(cfg, out, data_dir=data, quiet=True, force=True), data


def recall(run_dir: Path, data: str, users: list[str], k: int = 10) -> dict:
    from ur4rec.serve.recommender import Recommender

    exact = Recommender(run_dir, data)
    start = time.perf_counter()
    ann = Recommender(run_dir, data, index="ann")
    built = time.perf_counter() - start
    hits = 0
    for at in range(0, len(users), 100):
        chunk = users[at : at + 100]
        pairs = zip(exact.recommend_users(chunk, k), ann.recommend_users(chunk, k), strict=True)
        for e, a in pairs:
            hits += len({r.item for r in e.items} & {r.item for r in a.items})
    index = next(iter(ann.indexes.values()))  # type: ignore[union-attr]
    return {
        "recall@10": round(hits / (k * len(users)), 4),
        "users_checked": len(users),
        "index_lists": index.lists,
        "index_probe": index.probe,
        "candidates": ann.candidates,
        "index_mib": round(ann.index_memory_bytes / 2**20, 1),
        "load_and_build_seconds": round(built, 1),
    }


def serve_latency(run_dir: Path, data: str, index: str, users: list[str], n: int) -> dict:
    port = free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(run_dir), "--port", str(port),
           "--data-dir", data, "--index", index]  # fmt: skip
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(server, base, 900)
        rng = random.Random(1)
        timed_requests(base, [rng.choice(users) for _ in range(100)], 10, [])
        latencies: list[float] = []
        timed_requests(base, [rng.choice(users) for _ in range(n)], 10, latencies)
        status = Path(f"/proc/{server.pid}/status").read_text()
        peak = next(line for line in status.splitlines() if line.startswith("VmHWM"))
    finally:
        server.terminate()
        server.wait(timeout=60)
    return {
        "index": index,
        "requests": n,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "server_peak_rss_mib": round(int(peak.split()[1]) / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", default=str(OUT))
    args = parser.parse_args()
    run_dir, data = trained_run(args.items)
    from ur4rec.data.prepare import open_dataset

    dataset = open_dataset(f"ann-{args.items}", root=data)
    users = random.Random(0).sample(dataset.user_ids, 1000)
    quality = recall(run_dir, data, users)
    print(
        f"{dataset.n_items:,} items: recall@10 of ann against exact {quality['recall@10']} "
        f"({quality['index_lists']} lists, {quality['index_probe']} probed, "
        f"{quality['candidates']} candidates per branch; index {quality['index_mib']} MiB)",
        flush=True,
    )
    rows = []
    for index in ("ann", "exact"):
        row = serve_latency(run_dir, data, index, dataset.user_ids, args.requests)
        rows.append(row)
        print(
            f"GET --index {index}: p50 {row['p50_ms']} ms, p99 {row['p99_ms']} ms, server "
            f"peak RSS {row['server_peak_rss_mib']:,} MiB",
            flush=True,
        )
    command = command_line(__file__)
    result = {
        "command": command,
        "provenance": result_provenance(
            command, [text_hash((run_dir / "config.yaml").read_text())], [dataset.content_hash]
        ),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "items": dataset.n_items,
        "users": dataset.n_users,
        **quality,
        "serving": rows,
    }
    atomic_write_json(args.results, result)
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
