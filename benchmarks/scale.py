"""Scale on one machine: SASRec on synthetic logs of 10^6-10^7 interactions and 10^5-10^6 items.

    .venv/bin/python benchmarks/scale.py [--sizes 1000000x100000,10000000x100000,...] [--json]

Each size (interactions x items; users = interactions / 50, seed 0) runs in a fresh process:
`ur4rec data synth` (generate), opening the prepared folder, the leave-one-out split and the
training windows (prepare; a size marked `:prepare` stops there), one training epoch of
SASRec (hidden 64, 2 layers, max length 50, batches of 256 windows) with the mixed softmax
over 256 uniform and 256 in-batch negatives (`loss.kind=sampled_softmax loss.in_batch=true`:
the full softmax would cost [positions x items] per batch), then full-ranking evaluation of
every validation user, scored in item blocks (bounded memory). Times are wall seconds; peak
RSS is the process's after each phase (it never falls). ID-only on purpose: encoding 10^5
texts with MiniLM takes about 25 minutes on these cores. Writes docs/results/scale.json and
the plot docs/results/scale.png.
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
from ur4rec.provenance import text_hash

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "scale.json"
PLOT = ROOT / "docs" / "results" / "scale.png"
SIZES = (
    "1000000x10000,1000000x100000,10000000x100000,1000000x1000000,3000000x1000000,"
    "50000000x500000:prepare"
)
OVERRIDES = [
    "model.name=sasrec", "data.max_len=50", "model.hidden=64", "model.layers=2",
    "model.heads=2", "loss.kind=sampled_softmax", "loss.in_batch=true", "loss.negatives=256",
    "train.batch_size=256", "train.epochs=1", "train.patience=0",
]  # fmt: skip


def peak_mib() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def child(interactions: int, items: int, data: str, prepare_only: bool = False) -> dict:
    """One size, measured in this (fresh) process (``prepare_only``: no training)."""
    import torch

    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset, save_imported
    from ur4rec.data.splits import make_split
    from ur4rec.data.synth import SynthSpec, synthesise
    from ur4rec.data.windows import TrainWindows
    from ur4rec.eval.evaluator import Evaluator
    from ur4rec.models.base import ModelInputs, model_class
    from ur4rec.train.trainer import Trainer

    name = f"scale-{interactions}-{items}"
    row: dict = {"interactions": interactions, "items": items, "users": interactions // 50}
    start = time.perf_counter()
    spec = SynthSpec(name, users=interactions // 50, items=items, interactions=interactions)
    save_imported(synthesise(spec), data)
    row["generate_seconds"] = round(time.perf_counter() - start, 1)
    row["generate_peak_rss_mib"] = peak_mib()

    start = time.perf_counter()
    dataset = open_dataset(name, root=data)
    split = make_split(dataset)
    windows = TrainWindows(dataset, split.train, 50)
    row["prepare_seconds"] = round(time.perf_counter() - start, 1)
    row["prepare_peak_rss_mib"] = peak_mib()
    row["windows"], row["train_positions"] = len(windows), windows.n_targets
    if prepare_only:
        return row

    cfg = load_config(None, [f"data.dataset={name}", *OVERRIDES])
    torch.manual_seed(cfg.seed)
    model = model_class("sasrec").build(ModelInputs(cfg, dataset, split.train, windows))
    valid = Evaluator(dataset, split, "valid", "full")
    row["item_block"] = valid.item_block if valid.blocked(model) else dataset.n_items
    with tempfile.TemporaryDirectory() as run:
        state = Trainer(model, windows, valid, cfg.train, Path(run), cfg.seed, quiet=True).fit()
    epoch = state.history[0]
    row["epoch_seconds"] = epoch["train_seconds"]
    row["eval_seconds"] = epoch["eval_seconds"]
    row["eval_users"] = len(valid)
    row["valid_ndcg@10"] = round(epoch["valid/ndcg@10"], 4)
    row["peak_rss_mib"] = peak_mib()
    row["threads"] = torch.get_num_threads()
    return row


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for items in sorted({r["items"] for r in rows if "epoch_seconds" in r}):
        mine = sorted(
            (r for r in rows if r["items"] == items and "epoch_seconds" in r),
            key=lambda r: r["interactions"],
        )
        x = [r["interactions"] for r in mine]
        label = f"{items:,} items"
        for key, style in (("epoch_seconds", "-o"), ("eval_seconds", "--s")):
            what = "train epoch" if key == "epoch_seconds" else "evaluation"
            axes[0].plot(x, [r[key] for r in mine], style, label=f"{what}, {label}")
        axes[1].plot(x, [r["peak_rss_mib"] / 1024 for r in mine], "-o", label=label)
    for ax, ylabel in zip(axes, ("seconds (2 cores)", "peak RSS (GiB)"), strict=True):
        ax.set_xscale("log")
        ax.set_xlabel("interactions")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    fig.suptitle("SASRec on the synthetic generator: one epoch and one full-ranking evaluation")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default=SIZES)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--results", default=str(OUT))
    parser.add_argument(
        "--append", action="store_true", help="keep the results file's other sizes' rows"
    )
    parser.add_argument("--child", nargs=4, metavar=("INTERACTIONS", "ITEMS", "DATA", "WHAT"))
    args = parser.parse_args()
    if args.child:
        n, i, data, what = args.child
        print(json.dumps(child(int(n), int(i), data, what == "prepare")))
        return
    rows = []
    with tempfile.TemporaryDirectory() as data:
        for size in args.sizes.split(","):
            shape, _, what = size.partition(":")  # ":prepare": generate and prepare only
            n, i = (int(float(part)) for part in shape.split("x"))
            cmd = [sys.executable, __file__, "--child", str(n), str(i), data, what or "all"]
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
            if done.returncode != 0:
                raise SystemExit(f"size {size} failed: {done.stderr.strip()[-3000:]}")
            row = json.loads(done.stdout.strip().splitlines()[-1])
            rows.append(row)
            line = (
                f"{n:>11,} interactions {i:>9,} items: generate {row['generate_seconds']} s, "
                f"prepare {row['prepare_seconds']} s (peak RSS "
                f"{row['prepare_peak_rss_mib']:,} MiB)"
            )
            if "epoch_seconds" in row:
                line += (
                    f", epoch {row['epoch_seconds']} s, evaluation {row['eval_seconds']} s "
                    f"({row['eval_users']:,} users), peak RSS {row['peak_rss_mib']:,} MiB"
                )
            print(line, flush=True)
    command = command_line(__file__)
    if args.append and Path(args.results).is_file():
        previous = json.loads(Path(args.results).read_text())
        done = {(r["interactions"], r["items"]) for r in rows}
        rows = [r for r in previous["rows"] if (r["interactions"], r["items"]) not in done] + rows
        if previous["command"] != command:  # both commands made the rows
            command = f"{previous['command']} && .venv/bin/python {command}"
    result = {
        "command": command,
        "provenance": result_provenance(command, [text_hash(" ".join(OVERRIDES))]),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "rows": rows,
    }
    atomic_write_json(args.results, result)
    plot(rows, PLOT)
    if args.json:
        print(json.dumps(result, indent=2))
    print(f"wrote {args.results} and {PLOT}")


if __name__ == "__main__":
    main()
