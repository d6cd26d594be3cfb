"""`ur4rec serve` under load: GET and POST at 1, 8, 32 and 64 concurrent clients, /health
under load, server memory, and a soak of new texts.

    .venv/bin/python benchmarks/serve_load.py --run RUN_DIR [--workers N] [--seconds S]
    .venv/bin/python benchmarks/serve_load.py            # trains a small ml-100k run first

Starts `ur4rec serve` in its own process(es), then for each scenario runs C client threads
(one keep-alive connection each, spread over up to 8 processes) for a bounded time while one
more process polls /health every 50 ms. Scenarios:

- ``GET known user``: GET /users/{id}/recommendations?k=10 for random known users;
- ``POST new history``: a new 20-item history (random items, never repeated), no text, so the
  server writes the template text and encodes it: one sentence-encoder pass per request;
- ``POST returning history``: 20-item histories drawn from 200 sessions that come back, no
  text: after the first visit the template text's vector comes from the server's cache;
- ``POST with text``: a new 20-item history and a new one-sentence preference text.

Then the soak: POST requests with new texts and ``explain=true`` (every one a cache miss),
server RSS sampled as it goes; after warm-up it must stay flat (within 50 MiB). Prints a table
and writes it, with the targets and whether each was met, to ``--out`` (JSON; by default
docs/results/serve-load.json, which benchmarks/results_doc.py turns into the table in
docs/results.md). The clients
share the machine's cores with the server, as a local caller would.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from reuse import command_line, result_provenance, run_provenance  # noqa: E402
from serve_latency import free_port, known_users, percentile, small_run  # noqa: E402
from ur4rec.io import atomic_write_json  # noqa: E402

# (method, path, body or None) for the i-th request of client c
Request = tuple[str, str, bytes | None]
TARGETS = {
    "POST p50 sequential (ms)": 20.0,
    "POST p50 at 8 clients (ms)": 60.0,
    "/health p99 at 64 clients (ms)": 50.0,
    "soak RSS growth after warm-up (MiB)": 50.0,
}


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its children (uvicorn workers), in MiB."""
    total = 0
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total / 1024


class Client:
    """One keep-alive connection; reconnects after an error."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def send(self, method: str, path: str, body: bytes | None) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            self.connection.request(method, path, body=body, headers=headers)
            response = self.connection.getresponse()
            response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            status = 0
        return status, (time.perf_counter() - start) * 1000

    def close(self) -> None:
        self.connection.close()


def load(
    port: int, clients: int, seconds: float, make: Callable[[int, int], Request]
) -> dict[str, float]:
    """``clients`` connections send ``make(client, i)`` requests back to back for ``seconds``;
    /health is polled every 50 ms meanwhile. The clients are spread over up to 8 processes
    and the /health probe has one of its own: in one process, 64 busy client threads would
    make each wait for the client's own GIL, and that wait would be timed as the server's."""
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    stop = time.time() + seconds
    groups = [list(range(clients))[g :: min(clients, 8)] for g in range(min(clients, 8))]

    def client_process(ids: list[int]) -> None:
        latencies: list[list[float]] = [[] for _ in ids]
        errors = [0] * len(ids)

        def worker(slot: int, c: int) -> None:
            client, i = Client(port), 0
            while time.time() < stop:
                status, ms = client.send(*make(c, i))
                latencies[slot].append(ms)
                errors[slot] += status != 200
                i += 1
            client.close()

        threads = [threading.Thread(target=worker, args=(s, c)) for s, c in enumerate(ids)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results.put(("load", [x for part in latencies for x in part], sum(errors)))

    def health_process() -> None:
        client, latencies, errors = Client(port), [], 0
        while time.time() < stop:
            status, ms = client.send("GET", "/health", None)
            latencies.append(ms)
            errors += status != 200
            time.sleep(0.05)
        client.close()
        results.put(("health", latencies, errors))

    processes = [context.Process(target=client_process, args=(ids,)) for ids in groups]
    processes.append(context.Process(target=health_process))
    start = time.perf_counter()
    for p in processes:
        p.start()
    flat: list[float] = []
    health: list[float] = []
    errors = 0
    for _ in processes:
        kind, latencies, failed = results.get(timeout=seconds + 600)
        (health if kind == "health" else flat).extend(latencies)
        errors += failed
    elapsed = time.perf_counter() - start
    for p in processes:
        p.join()
    return {
        "clients": clients,
        "requests": len(flat),
        "req_per_s": round(len(flat) / elapsed, 1),
        "p50_ms": round(percentile(flat, 50), 2),
        "p99_ms": round(percentile(flat, 99), 2),
        "errors": errors,
        "health_p99_ms": round(percentile(health, 99), 2) if health else float("nan"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", help="a trained run folder (default: train a small one)")
    parser.add_argument("--data-dir")
    parser.add_argument("--workers", type=int, default=1, help="server processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--seconds", type=float, default=8.0, help="per scenario and level")
    parser.add_argument("--clients", default="1,8,32,64")
    parser.add_argument("--soak", type=int, default=3000, help="soak requests")
    parser.add_argument("--only", help="run only the scenarios whose names contain this")
    parser.add_argument("--out", help="results JSON (default: docs/results/serve-load.json)")
    args = parser.parse_args()
    run_dir = (
        Path(args.run) if args.run else small_run(ROOT / "runs" / "serve-latency", args.data_dir)
    )
    out = Path(args.out) if args.out else ROOT / "docs" / "results" / "serve-load.json"
    users = known_users(run_dir, args.data_dir)
    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset

    cfg = load_config(run_dir / "config.yaml")
    dataset = open_dataset(cfg.data.dataset, root=args.data_dir)
    items = dataset.item_ids
    titles = [info.title for info in dataset.item_info]
    genres = sorted({g for info in dataset.item_info for g in info.genres}) or ["any"]

    port = free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(run_dir), "--port", str(port),
           "--workers", str(args.workers), "--threads", str(args.threads)]  # fmt: skip
    if args.data_dir:
        cmd += ["--data-dir", args.data_dir]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        probe = Client(port)
        while probe.send("GET", "/health", None)[0] != 200:
            if server.poll() is not None:
                raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                raise SystemExit("server did not start within 180 s")
            time.sleep(0.2)
        probe.close()
        rss_start = rss_mib(server.pid)
        print(
            f"{cfg.model.name} run {run_dir} on {dataset.name} ({dataset.n_users} users, "
            f"{dataset.n_items} items); {args.workers} server process(es), {args.threads} torch "
            f"thread(s) each, {os.cpu_count()} CPUs; {args.seconds:g} s per row; server RSS "
            f"{rss_start:.0f} MiB after start"
        )
        rng = random.Random(0)
        sessions = [rng.sample(items, 20) for _ in range(200)]

        def post(history: list[str], text: str | None) -> Request:
            body: dict[str, object] = {"history": history, "k": 10}
            if text is not None:
                body["preference_text"] = text
            return "POST", "/recommendations", json.dumps(body).encode()

        def new_text(r: random.Random) -> str:
            return (
                f"Looking for {r.choice(genres).lower()} films like {r.choice(titles)}, "
                f"not {r.choice(genres).lower()} ({r.randrange(10**6)})."
            )

        def fresh(c: int, i: int) -> random.Random:
            return random.Random(hash((c, i, time.perf_counter_ns())))

        scenarios: dict[str, Callable[[int, int], Request]] = {
            "GET known user": lambda c, i: (
                "GET", f"/users/{fresh(c, i).choice(users)}/recommendations?k=10", None
            ),
            "POST new history": lambda c, i: post(fresh(c, i).sample(items, 20), None),
            "POST returning history": lambda c, i: post(fresh(c, i).choice(sessions), None),
            "POST with text": lambda c, i: (
                lambda r: post(r.sample(items, 20), new_text(r))
            )(fresh(c, i)),
        }  # fmt: skip
        # Warm-up: the returning sessions' first visits, and a few of each kind.
        warm = Client(port)
        for history in sessions:
            warm.send(*post(history, None))
        for make in scenarios.values():
            for i in range(5):
                warm.send(*make(0, i))
        warm.close()

        rows = []
        levels = [int(c) for c in args.clients.split(",")]
        header = (
            f"{'scenario':<24} {'clients':>7} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'errors':>6} {'/health p99':>11}"
        )
        print(header)
        for name, make in scenarios.items():
            if args.only and args.only not in name:
                continue
            for clients in levels:
                row = {"scenario": name, **load(port, clients, args.seconds, make)}
                rows.append(row)
                print(
                    f"{name:<24} {clients:>7} {row['req_per_s']:>8.1f} {row['p50_ms']:>8.2f} "
                    f"{row['p99_ms']:>8.2f} {row['errors']:>6} {row['health_p99_ms']:>11.2f}"
                )
        rss_after_load = rss_mib(server.pid)

        # Soak: new texts with explanations, each one a cache miss; RSS every 250 requests.
        soak_client, soak_rng, samples, soak_errors = Client(port), random.Random(1), [], 0
        for i in range(args.soak):
            body = json.dumps(
                {
                    "history": soak_rng.sample(items, 20),
                    "preference_text": new_text(soak_rng) + " " + new_text(soak_rng),
                    "k": 10,
                    "explain": True,
                }
            ).encode()
            soak_errors += soak_client.send("POST", "/recommendations", body)[0] != 200
            if (i + 1) % 250 == 0:
                samples.append(round(rss_mib(server.pid), 1))
        soak_client.close()
        warmed = samples[len(samples) // 3 :] or samples
        growth = max(warmed) - min(warmed) if warmed else float("nan")
        print(
            f"soak: {args.soak} POSTs with new texts and explain=true, {soak_errors} errors; "
            f"server RSS every 250: {samples} MiB; after warm-up (last two thirds) it moves "
            f"by {growth:.1f} MiB"
        )
        rss_end = rss_mib(server.pid)
        print(
            f"server RSS: {rss_start:.0f} MiB after start, {rss_after_load:.0f} after the load "
            f"table, {rss_end:.0f} after the soak"
        )
    finally:
        server.terminate()
        server.wait(timeout=30)

    def p50(clients: int) -> float:
        found = [
            r["p50_ms"]
            for r in rows
            if r["clients"] == clients and r["scenario"] in ("POST new history", "POST with text")
        ]
        return max(found) if found else float("nan")

    health_64 = [r["health_p99_ms"] for r in rows if r["clients"] == 64]
    measured = {
        "POST p50 sequential (ms)": p50(1),
        "POST p50 at 8 clients (ms)": p50(8),
        "/health p99 at 64 clients (ms)": max(health_64) if health_64 else float("nan"),
        "soak RSS growth after warm-up (MiB)": growth,
    }
    checks = {
        name: {"target": TARGETS[name], "measured": value, "met": value <= TARGETS[name]}
        for name, value in measured.items()
    }
    checks["zero errors"] = {
        "target": 0,
        "measured": sum(r["errors"] for r in rows) + soak_errors,
        "met": sum(r["errors"] for r in rows) + soak_errors == 0,
    }
    for name, check in checks.items():
        verdict = "met" if check["met"] else "MISSED"
        print(f"target {name}: <= {check['target']}, measured {check['measured']}: {verdict}")
    atomic_write_json(
        out,
        {
            "command": command_line(__file__),
            "provenance": result_provenance(command_line(__file__)),
            "run": str(run_dir),
            "run_provenance": run_provenance(run_dir),
            "workers": args.workers,
            "threads": args.threads,
            "cpus": os.cpu_count(),
            "seconds_per_row": args.seconds,
            "rows": rows,
            "rss_mib": {"start": rss_start, "after_load": rss_after_load, "end": rss_end},
            "soak": {"requests": args.soak, "errors": soak_errors, "rss_samples": samples},
            "targets": checks,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
