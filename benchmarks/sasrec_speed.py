"""SASRec speed on ml-100k (all ratings): seconds per training epoch, peak memory, and the
time to evaluate every user under the full protocol.

    .venv/bin/python benchmarks/sasrec_speed.py [--epochs 3] [--rounds 2] [--json]

On a machine with a GPU, ``--set train.device=cuda --results docs/results/sasrec-speed-cuda.json``
times the epochs there (evaluation stays on the CPU, as in every run).

Model: max length 50, hidden 64, 2 layers, 2 heads, full-softmax CE loss (issue #3's setting;
RecBole 1.2.1's SASRec took 232 s per epoch on the same interactions on this machine). Trained
in float32 (the default) and in bfloat16 (train.precision), alternately for ``--rounds``
rounds of ``--epochs`` epochs each from the same initial weights, so a shared host's drift
falls on both alike; the figure for each is the median over its epochs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from reuse import command_line, cpu_name, result_provenance
from ur4rec.config import dump_config, load_config
from ur4rec.data.prepare import open_dataset
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.provenance import text_hash
from ur4rec.runs import build
from ur4rec.text.encoder import native_bfloat16
from ur4rec.train.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent


def matmul_gflops(size: int = 2048, reps: int = 5) -> float:
    """The machine's float32 matmul rate now (median of ``reps`` products of two
    ``size`` x ``size`` matrices): epoch times on a shared host vary with it."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    rates = []
    for _ in range(reps):
        start = time.perf_counter()
        a @ b
        rates.append(2 * size**3 / (time.perf_counter() - start) / 1e9)
    return round(statistics.median(rates), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precisions", default="float32,bfloat16")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="a config override on top of the benchmark's model (e.g. model.layers=3)",
    )  # fmt: skip
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "sasrec-speed.json"))
    args = parser.parse_args()

    precisions = args.precisions.split(",")
    overrides = [
        "data.dataset=ml-100k", "data.max_len=50", "model.hidden=64", "model.layers=2",
        "model.heads=2", "loss.kind=ce", f"train.epochs={args.epochs}",
        "train.eval_every=1000", "train.patience=0", *args.set,
    ]  # fmt: skip
    cfg = load_config(None, overrides)
    dataset = open_dataset("ml-100k")
    model, split, windows = build(cfg, dataset)
    gflops_before = matmul_gflops()
    epochs: dict[str, list[float]] = {p: [] for p in precisions}
    for _ in range(args.rounds):
        for precision in precisions:
            run_cfg = load_config(None, [*overrides, f"train.precision={precision}"])
            run_model, _, _ = build(run_cfg, dataset)
            with tempfile.TemporaryDirectory() as tmp:
                trainer = Trainer(
                    run_model, windows, Evaluator(dataset, split, "valid", "full"),
                    run_cfg.train, Path(tmp), run_cfg.seed, quiet=True,
                )  # fmt: skip
                state = trainer.fit()
            epochs[precision] += [row["train_seconds"] for row in state.history]
    epoch_seconds = epochs[precisions[0]]
    gflops_after = matmul_gflops()
    evaluator = Evaluator(dataset, split, "test", "full")
    model.eval()
    eval_seconds = []
    for _ in range(3):
        start = time.perf_counter()
        evaluator.evaluate(model)
        eval_seconds.append(time.perf_counter() - start)
    command = command_line(__file__)
    result = {
        "command": command,
        "provenance": result_provenance(
            command, [text_hash(dump_config(cfg))], [dataset.content_hash]
        ),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "dataset": "ml-100k",
        "interactions": dataset.n_interactions,
        "train_positions_per_epoch": windows.n_targets,
        "threads": torch.get_num_threads(),
        "train_device": cfg.train.device,
        "gpu": torch.cuda.get_device_name()
        if cfg.train.device != "cpu" and torch.cuda.is_available()
        else None,
        "matmul_gflops": [gflops_before, gflops_after],
        "cpu": cpu_name(),
        "native_bfloat16": native_bfloat16(),
        "precision": precisions[0],
        "epoch_seconds_median": round(statistics.median(epoch_seconds), 3),
        "epoch_seconds": epoch_seconds,
        "precisions": {
            p: {"epoch_seconds_median": round(statistics.median(t), 3), "epoch_seconds": t}
            for p, t in epochs.items()
        },
        "full_eval_seconds_median": round(statistics.median(eval_seconds), 3),
        "eval_users": len(evaluator),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"SASRec ml-100k, training on {cfg.train.device}: "
            + ", ".join(
                f"{p} {r['epoch_seconds_median']:.2f} s/epoch"
                for p, r in result["precisions"].items()
            )
            + f" (medians of {len(epoch_seconds)}, {windows.n_targets} positions), "
            f"full-protocol evaluation of "
            f"{len(evaluator)} users {result['full_eval_seconds_median']:.3f} s, peak RSS "
            f"{result['peak_rss_mib']} MiB, {result['threads']} threads; 2048x2048 matmul "
            f"{gflops_before} GFLOP/s before the epochs, {gflops_after} after"
        )
    atomic_write_json(args.results, result)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
