"""POST /items on a running `ur4rec serve`: latency, and whether an added item is recommended.

    .venv/bin/python benchmarks/add_items.py --run runs/cold-start/cold-items/ur4rec-s42

The run folder is copied to a temporary folder first (the service writes its item overlay
beside the run, and the benchmark must leave the original as it was). The service starts in
its own process with its defaults; one client then adds ``--items`` new items sequentially
over one keep-alive connection, each with an LLM description from
../shared/seed-llm-texts/item_descriptions.json under a new id, and times each POST (encoding,
the atomic overlay write and the model update). Then, for ``--probes`` catalogue items h, an
item whose text is h's own item text is added, and a new user whose history is h alone asks
for 10 items: the rank of the added twin is recorded (a text model should place it near the
top). Merges one row per run and encoder (``--encoder-runtime``; default: the service's own
choice) into docs/results/add-items.jsonl; benchmarks/results_doc.py renders it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from reuse import command_line, cpu_name, merge_rows, result_provenance, run_provenance
from serve_latency import free_port, percentile

ROOT = Path(__file__).resolve().parent.parent
LLM_ITEMS = ROOT.parent / "shared" / "seed-llm-texts" / "item_descriptions.json"
OUT = ROOT / "docs" / "results" / "add-items.jsonl"


def start(
    run_dir: Path, data_dir: str | None, runtime: str | None = None, precision: str | None = None
) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    cmd = [sys.executable, "-m", "ur4rec.cli", "serve", str(run_dir), "--port", str(port)]
    if data_dir:
        cmd += ["--data-dir", data_dir]
    if runtime:
        cmd += ["--encoder-runtime", runtime]
    if precision:
        cmd += ["--encoder-precision", precision]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            raise SystemExit(f"server exited: {server.stderr.read()[-2000:]}")  # type: ignore[union-attr]
        try:
            httpx.get(f"{base}/health", timeout=1).raise_for_status()
            return server, base
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("server did not start within 180 s") from None
            time.sleep(0.2)


def post(connection: http.client.HTTPConnection, path: str, body: dict) -> tuple[int, dict, float]:
    data = json.dumps(body).encode()
    begin = time.perf_counter()
    connection.request("POST", path, data, {"content-type": "application/json"})
    response = connection.getresponse()
    payload = json.loads(response.read() or b"{}")
    return response.status, payload, (time.perf_counter() - begin) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", required=True, help="a trained run folder of a text model")
    parser.add_argument("--data-dir")
    parser.add_argument("--items", type=int, default=200, help="timed POST /items")
    parser.add_argument("--probes", type=int, default=50, help="twins added and looked for")
    parser.add_argument(
        "--encoder-runtime", choices=("auto", "torch", "onnx"), help="default: the service's"
    )
    parser.add_argument(
        "--encoder-precision",
        choices=("auto", "float32", "bfloat16"),
        help="default: the service's (bfloat16 where the CPU has it natively)",
    )
    args = parser.parse_args()

    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset
    from ur4rec.text.templates import item_text

    source = Path(args.run)
    cfg = load_config(source / "config.yaml")
    dataset = open_dataset(cfg.data.dataset, root=args.data_dir)
    descriptions = list(json.loads(LLM_ITEMS.read_text(encoding="utf-8")).values())
    rng = random.Random(0)
    with tempfile.TemporaryDirectory(prefix="ur4rec-add-items-") as tmp:
        run_dir = Path(tmp) / source.name
        shutil.copytree(source, run_dir, ignore=shutil.ignore_patterns("items-added.pt*"))
        server, base = start(run_dir, args.data_dir, args.encoder_runtime, args.encoder_precision)
        encoder = httpx.get(f"{base}/health").json().get("encoder")
        host, port = base.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=60)
        try:
            latencies: list[float] = []
            for i in range(args.items + 5):
                text = descriptions[i % len(descriptions)]
                status, payload, ms = post(connection, "/items", {"id": f"bench-{i}", "text": text})
                if status != 201:
                    raise SystemExit(f"POST /items answered {status}: {payload}")
                if i >= 5:  # the first few load the encoder's kernels
                    latencies.append(ms)
            status, payload, _ = post(connection, "/items", {"id": "bench-0", "text": "again"})
            duplicate = status
            ranks: list[int | None] = []
            for h in rng.sample(range(dataset.n_items), args.probes):
                twin = f"twin-{h}"
                text = item_text(dataset.item_info[h])
                status, payload, _ = post(connection, "/items", {"id": twin, "text": text})
                assert status == 201, payload
                body = {"history": [dataset.item_ids[h]], "k": 10}
                status, payload, _ = post(connection, "/recommendations", body)
                assert status == 200, payload
                found = [r["rank"] for r in payload["items"] if r["item"] == twin]
                ranks.append(found[0] if found else None)
        finally:
            connection.close()
            server.terminate()
            server.wait(timeout=30)
        restarted, base = start(
            run_dir, args.data_dir, args.encoder_runtime, args.encoder_precision
        )
        try:
            kept = httpx.get(f"{base}/health").json()["items"]
        finally:
            restarted.terminate()
            restarted.wait(timeout=30)

    in_top = [r for r in ranks if r is not None]
    result = {
        "run": str(source),
        "model": cfg.model.name,
        "dataset": cfg.data.dataset,
        "cpus": os.cpu_count(),
        "cpu": cpu_name(),
        "encoder": encoder,
        "items_posted": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.mean(latencies), 2),
        "duplicate_status": duplicate,
        "probes": args.probes,
        "twin_top1": sum(r == 1 for r in in_top) / len(ranks),
        "twin_top10": len(in_top) / len(ranks),
        "items_after_restart": kept,
        "items_expected": dataset.n_items + args.items + 5 + args.probes,
        "run_provenance": run_provenance(source),
        "provenance": result_provenance(command_line(__file__)),
    }
    merge_rows(OUT, [result], ("run", "encoder"))
    print(
        f"{cfg.model.name} on {cfg.data.dataset} (encoder: {encoder}): POST /items p50 "
        f"{result['p50_ms']} ms, "
        f"p99 {result['p99_ms']} ms over {len(latencies)}; duplicate -> {duplicate}; the twin "
        f"of a one-item history is top-1 for {result['twin_top1']:.0%}, top-10 for "
        f"{result['twin_top10']:.0%} of {args.probes}; after a restart {kept} items "
        f"(expected {result['items_expected']}). Wrote {OUT.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    main()
