"""Text vectors at scale: streamed encoding and the memory-mapped store (text/vectors.py).

    .venv/bin/python benchmarks/embedding_store.py [--encode 2000] [--vectors 1000000] [--json]

Two measurements, each in a fresh process whose peak RSS is its own (getrusage):
1. encoding: `--encode` synthetic item texts (about 25 words each, from a seeded vocabulary)
   through the bundled all-MiniLM-L6-v2 into an empty store, in chunks of 512: texts per second
   and peak RSS;
2. the store with `--vectors` 384-d vectors (random, written as the encoder writes them, in
   shards of 8,192): opening it and writing every vector in a shuffled order to a memory-mapped
   aligned file (what a training run reads), against the one-file cache layout it replaced
   (np.load of the whole matrix, then a gather in memory).
Writes docs/results/embedding-store.json; the store itself goes under runs/embedding-bench/.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from reuse import command_line, result_provenance
from ur4rec.io import atomic_write_json

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / "runs" / "embedding-bench"
OUT = ROOT / "docs" / "results" / "embedding-store.json"
DIM = 384


def texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(3000)]
    genres = ["drama", "comedy", "space", "noir", "family", "war", "music", "horror"]
    return [
        f"Item {i}. {' '.join(rng.choice(genres, 2))}. "
        + " ".join(rng.choice(words, int(rng.integers(15, 30))))
        for i in range(n)
    ]


def child_encode(n: int) -> dict:
    from ur4rec.text.encoder import TextEncoder

    folder = WORK / "encode"
    shutil.rmtree(folder, ignore_errors=True)
    corpus = texts(n)
    encoder = TextEncoder(cache_dir=folder, chunk=512)
    assert encoder.model is not None  # loading the model is not encoding
    start = time.perf_counter()
    vectors = encoder.encode(corpus)
    seconds = time.perf_counter() - start
    return {"texts": n, "seconds": round(seconds, 1), "texts_per_s": round(n / seconds, 1),
            "dim": int(vectors.shape[1])}  # fmt: skip


def child_write(n: int) -> dict:
    from ur4rec.text.vectors import VectorStore, digest

    folder = WORK / "store"
    shutil.rmtree(folder, ignore_errors=True)
    store = VectorStore(folder)
    rng = np.random.default_rng(1)
    start = time.perf_counter()
    for first in range(0, n, 8192):
        count = min(8192, n - first)
        keys = [digest(f"text {i}") for i in range(first, first + count)]
        store.add(keys, rng.standard_normal((count, DIM), dtype=np.float32))
    return {"seconds": round(time.perf_counter() - start, 1)}


def child_map(n: int) -> dict:
    from ur4rec.text.vectors import VectorStore, digest

    order = np.random.default_rng(2).permutation(n)
    start = time.perf_counter()
    store = VectorStore(WORK / "store")
    opened = time.perf_counter() - start
    rows = store.rows(digest(f"text {i}") for i in order)
    mapped = store.gather(rows, out=WORK / "aligned.npy")
    checksum = float(mapped[:: max(1, n // 1000)].sum())
    return {"open_seconds": round(opened, 1), "seconds": round(time.perf_counter() - start, 1),
            "checksum": checksum, **memory_now()}  # fmt: skip


def child_single(n: int) -> dict:
    """The one-file layout: the whole matrix in memory, then the aligned gather."""
    path = WORK / "single.npy"
    if not path.is_file():
        store_vectors = np.concatenate(
            [np.load(p, mmap_mode="r") for p in sorted((WORK / "store").glob("*.npy"))]
        )
        np.save(path, store_vectors)
        return {}
    order = np.random.default_rng(2).permutation(n)
    start = time.perf_counter()
    vectors = np.load(path)
    aligned = vectors[order]
    seconds = time.perf_counter() - start
    return {"seconds": round(seconds, 1), "checksum": float(aligned.sum()), **memory_now()}


def memory_now() -> dict:
    """Resident memory now, with the result still held, split: anonymous (the process's own)
    and file-backed (mapped pages, which the kernel drops under pressure)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("RssAnon", "RssFile"):
            fields[key] = round(int(value.split()[0]) / 1024)
    return {"anon_mib_end": fields.get("RssAnon"), "file_mib_end": fields.get("RssFile")}


def measure(task: str, n: int) -> dict:
    """Run one child in a fresh process; its result with its own peak RSS."""
    done = subprocess.run(
        [sys.executable, __file__, "--child", task, str(n)], capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"{task} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--encode", type=int, default=2000)
    parser.add_argument("--vectors", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", default=str(OUT))
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        task, n = args.child[0], int(args.child[1])
        result = globals()[f"child_{task}"](n)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({**result, "peak_rss_mib": round(peak)}))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "single.npy").unlink(missing_ok=True)
    encode = measure("encode", args.encode)
    write = measure("write", args.vectors)
    mapped = measure("map", args.vectors)
    measure("single", args.vectors)  # writes the one-file matrix
    single = measure("single", args.vectors)
    for name in ("single.npy", "aligned.npy"):
        (WORK / name).unlink(missing_ok=True)
    result = {
        "command": command_line(__file__),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "cpus": os.cpu_count(),
        "encode": encode,
        "vectors": args.vectors,
        "vectors_mib": round(args.vectors * DIM * 4 / 2**20),
        "store_write": write,
        "store_map": mapped,
        "single_file": single,
        "provenance": result_provenance(command_line(__file__)),
    }
    atomic_write_json(Path(args.results), result)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"encoding: {encode['texts']} texts at {encode['texts_per_s']} texts/s, peak RSS "
            f"{encode['peak_rss_mib']} MiB\n"
            f"store of {args.vectors:,} vectors ({result['vectors_mib']} MiB): written in "
            f"{write['seconds']} s; opened in {mapped['open_seconds']} s and mapped in "
            f"{mapped['seconds']} s at {mapped['peak_rss_mib']} MiB peak RSS; the one-file "
            f"layout: {single['seconds']} s at {single['peak_rss_mib']} MiB"
        )
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
