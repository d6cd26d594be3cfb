"""Latency of `ur4rec serve` over loopback, measured by a real HTTP client.

    .venv/bin/python benchmarks/serve_latency.py                  # trains a small run first
    .venv/bin/python benchmarks/serve_latency.py --run RUN_DIR    # an existing ml-100k run

Starts the server in its own process, then times GET /users/{id}/recommendations?k=10 for
random known users: sequentially over one keep-alive connection, then from 8 concurrent
clients (one connection each). Prints p50 / p99 / max latency and throughput. Without --run it
first trains the default UR4Rec config on ml-100k for one epoch per stage into
runs/serve-latency: request latency depends on the architecture, not on the trained weights.
The client shares the machine's cores with the server, as a local caller would.
"""

from __future__ import annotations

import argparse
import http.client
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def small_run(out: Path, data_dir: str | None) -> Path:
    from ur4rec.config import load_config
    from ur4rec.train import run

    if (out / "summary.json").is_file():
        return out
    cfg = load_config(ROOT / "configs" / "ur4rec-ml-100k.yaml")
    for stage in cfg.stages:
        stage.epochs = 1
    print(f"training {out} (one epoch per stage; latency does not depend on the weights)")
    return run.train(cfg, out, data_dir=data_dir, quiet=True)


def known_users(run_dir: Path, data_dir: str | None) -> list[str]:
    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset

    cfg = load_config(run_dir / "config.yaml")
    return open_dataset(cfg.data.dataset, root=data_dir).user_ids


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def wait_for_health(server: subprocess.Popen, base: str, limit: float) -> dict:
    """The server's /health answer once it is up; exits naming why when it dies first or is
    not up within ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while True:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
        try:
            return httpx.get(f"{base}/health", timeout=1).json()
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit(f"server did not start within {limit:.0f} s") from None
            time.sleep(0.1)


def timed_requests(base: str, users: list[str], k: int, out: list[float]) -> None:
    """One keep-alive connection (the standard library's HTTP client: its own CPU cost per
    request is small, and it shares the machine's cores with the server)."""
    host, port = base.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        for user in users:
            start = time.perf_counter()
            connection.request("GET", f"/users/{user}/recommendations?k={k}")
            response = connection.getresponse()
            body = response.read()
            out.append((time.perf_counter() - start) * 1000)
            if response.status != 200:
                raise RuntimeError(f"{response.status}: {body[:200]!r}")
    finally:
        connection.close()


def report(name: str, latencies: list[float], seconds: float) -> None:
    print(
        f"{name:<22} n={len(latencies):<5} p50 {percentile(latencies, 50):6.2f} ms  "
        f"p99 {percentile(latencies, 99):6.2f} ms  max {max(latencies):6.1f} ms  "
        f"mean {statistics.mean(latencies):5.2f} ms  {len(latencies) / seconds:7.0f} req/s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run folder (default: train a small one)")
    parser.add_argument("--data-dir")
    parser.add_argument("--requests", type=int, default=2000, help="sequential requests")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--per-client", type=int, default=500)
    parser.add_argument("-k", type=int, default=10)
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    args = parser.parse_args()
    run_dir = (
        Path(args.run) if args.run else small_run(ROOT / "runs" / "serve-latency", args.data_dir)
    )

    port = free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(run_dir), "--port", str(port),
           "--workers", str(args.workers)]  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        health = wait_for_health(server, base, 120)
        print(
            f"{health['model']} on {health['dataset']} ({health['users']} users, "
            f"{health['items']} items), k={args.k}, {args.workers} server process(es), "
            f"{os.cpu_count()} CPUs, run {run_dir}"
        )
        rng = random.Random(0)
        ids = known_users(run_dir, args.data_dir)
        warm: list[float] = []
        timed_requests(base, [rng.choice(ids) for _ in range(200)], args.k, warm)

        sequential: list[float] = []
        start = time.perf_counter()
        timed_requests(base, [rng.choice(ids) for _ in range(args.requests)], args.k, sequential)
        report("sequential", sequential, time.perf_counter() - start)

        lists: list[list[float]] = [[] for _ in range(args.clients)]
        threads = [
            threading.Thread(
                target=timed_requests,
                args=(base, [rng.choice(ids) for _ in range(args.per_client)], args.k, out),
            )
            for out in lists
        ]
        start = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        concurrent = [x for out in lists for x in out]
        report(f"{args.clients} concurrent clients", concurrent, time.perf_counter() - start)
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
