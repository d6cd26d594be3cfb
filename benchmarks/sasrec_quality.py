"""SASRec against popularity and EASE on the test split, both protocols, both ml-100k sets.

    .venv/bin/python benchmarks/sasrec_quality.py             # the README table (seed 42)
    .venv/bin/python benchmarks/sasrec_quality.py --seeds 42,43,44 --datasets ml-100k-liked
    .venv/bin/python benchmarks/sasrec_quality.py --sweep     # validation-only sweep of defaults

The sweep trains variants of configs/sasrec-ml-100k-liked.yaml and reports VALIDATION NDCG@10
(full protocol) only: defaults are chosen there, never on test.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path

from reuse import plan_run
from ur4rec.config import RunConfig, dump_config, load_config
from ur4rec.eval.baselines import baseline_table
from ur4rec.measures import SAMPLED_99
from ur4rec.report_table import format_table
from ur4rec.train import run

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
SWEEP = {
    "default": [],
    "dropout 0.5": ["model.dropout=0.5", "model.attn_dropout=0.5"],
    "dropout 0.1": ["model.dropout=0.1", "model.attn_dropout=0.1"],
    "lr 3e-3": ["train.lr=3e-3"],
    "bce, 1 negative": ["loss.kind=bce", "loss.negatives=1"],
    "sampled softmax, 256 negatives": ["loss.kind=sampled_softmax", "loss.negatives=256"],
    "post-norm": ["model.norm=post"],
}


def train(cfg: RunConfig, run_dir: Path) -> Path:
    """A current run of ``cfg`` in ``run_dir``: reused, resumed or trained (benchmarks/reuse.py)."""
    plan = plan_run(run_dir, dump_config(cfg))
    if plan == "resume":
        run.resume(run_dir, quiet=True)
    elif plan == "train":
        run.train(cfg, run_dir, quiet=True)
    return run_dir


def sweep(out: Path) -> None:
    rows = []
    for name, overrides in SWEEP.items():
        cfg = load_config(CONFIGS / "sasrec-ml-100k-liked.yaml", overrides)
        run_dir = train(cfg, out / name.replace(" ", "_").replace(",", ""))
        summary = json.loads((run_dir / "summary.json").read_text())
        rows.append(
            {
                "variant": name,
                "valid ndcg@10": summary["valid"]["ndcg@10"],
                "valid hit@10": summary["valid"]["hit@10"],
                "best epoch": summary["best_epoch"],
                "seconds": summary["train_seconds"],
            }
        )
        print(format_table(rows[-1:], list(rows[-1])), flush=True)
    print("\nml-100k-liked, validation split, full protocol:")
    print(format_table(rows, list(rows[0])))


def table(out: Path, seeds: list[int], datasets: list[str]) -> None:
    rows = []
    for name in datasets:
        per_protocol: dict[str, list[dict]] = {"full": [], SAMPLED_99: []}
        for seed in seeds:
            cfg = load_config(CONFIGS / f"sasrec-{name}.yaml", [f"seed={seed}"])
            run_dir = train(cfg, out / f"{name}-s{seed}")
            for protocol in per_protocol:
                per_protocol[protocol].append(run.evaluate(run_dir, protocol, "test"))
        for results in per_protocol.values():
            row: dict[str, object] = {**results[0], "model": f"sasrec ({len(seeds)} seeds)"}
            for key in ("hit@10", "ndcg@10", "mrr@10"):
                values = [r[key] for r in results]
                row[key] = (
                    f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"
                    if len(values) > 1
                    else values[0]
                )
            rows.append(row)
    rows += baseline_table(datasets)
    rows.sort(key=lambda r: (r["dataset"], r["protocol"] != "full", r["model"]))
    print(format_table(rows, ["dataset", "protocol", "model", "hit@10", "ndcg@10", "mrr@10"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sweep", action="store_true", help="validation sweep of defaults")
    parser.add_argument("--out", help="keep the runs here (default: a temp folder)")
    parser.add_argument("--seeds", default="42", help="training seeds, e.g. 42,43,44")
    parser.add_argument("--datasets", default="ml-100k,ml-100k-liked")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.out or tmp)
        if args.sweep:
            sweep(out)
        else:
            seeds = [int(s) for s in args.seeds.split(",")]
            table(out, seeds, args.datasets.split(","))


if __name__ == "__main__":
    main()
