"""Where a SASRec epoch's time goes: torch.profiler over one epoch of benchmarks/sasrec_speed.py's
setting (after a warm-up epoch), the operators with the most self CPU time.

    .venv/bin/python benchmarks/sasrec_profile.py --label after
    .venv/bin/python benchmarks/sasrec_profile.py --label bfloat16 --precision bfloat16
    git worktree add /tmp/before COMMIT && PYTHONPATH=/tmp/before/src \\
        .venv/bin/python benchmarks/sasrec_profile.py --label before

Each label's profile is kept in docs/results/sasrec-profile.json with the commit and source
hash of the code it profiled (the second form profiles an older checkout with this script).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from reuse import command_line
from ur4rec.config import load_config
from ur4rec.data.prepare import open_dataset
from ur4rec.io import atomic_write_json
from ur4rec.provenance import provenance
from ur4rec.runs import build

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "sasrec-profile.json"
OVERRIDES = [
    "data.dataset=ml-100k", "data.max_len=50", "model.hidden=64", "model.layers=2",
    "model.heads=2", "loss.kind=ce",
]  # fmt: skip


def epoch(model: torch.nn.Module, windows, optimizer, generator, precision: str) -> float:
    model.train()
    start = time.perf_counter()
    for batch in windows.batches(128, generator):
        # as the trainer does for train.precision=bfloat16
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16"):
            loss = model.training_loss(batch, generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--label", required=True, help="e.g. before or after")
    parser.add_argument("--top", type=int, default=12)
    parser.add_argument("--precision", choices=["float32", "bfloat16"], default="float32")
    parser.add_argument("--results", default=str(OUT))
    args = parser.parse_args()
    cfg = load_config(None, OVERRIDES)
    model, _, windows = build(cfg, open_dataset("ml-100k"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(0)
    epoch(model, windows, optimizer, generator, args.precision)  # warm-up
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        seconds = epoch(model, windows, optimizer, generator, args.precision)
    events = sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)
    total = sum(e.self_cpu_time_total for e in events)
    rows = [
        {"op": e.key, "self_ms": round(e.self_cpu_time_total / 1000, 1), "calls": e.count,
         "share": round(e.self_cpu_time_total / total, 3)}
        for e in events[: args.top]
    ]  # fmt: skip
    path = Path(args.results)
    kept = json.loads(path.read_text()) if path.is_file() else {}
    kept[args.label] = {
        "command": command_line(__file__),
        "provenance": provenance(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "epoch_seconds_profiled": round(seconds, 2),
        "self_cpu_ms": round(total / 1000, 1),
        "threads": torch.get_num_threads(),
        "precision": args.precision,
        "top": rows,
    }
    atomic_write_json(path, kept)
    print(f"{args.label}: {seconds:.2f} s profiled epoch, {total / 1000:.0f} ms self CPU")
    for r in rows:
        print(f"  {r['op']:<45} {r['self_ms']:>8.1f} ms {r['calls']:>6} calls {r['share']:.1%}")


if __name__ == "__main__":
    main()
