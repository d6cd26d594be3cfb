"""How SASRec's defaults were chosen: variants of configs/sasrec-ml-100k-liked.yaml, judged on
the VALIDATION split only (full protocol, NDCG@10), never on test.

    .venv/bin/python benchmarks/sasrec_quality.py [--out runs/sasrec-sweep]

Each variant is trained into OUT/VARIANT (a stored run is reused only when it is a run of the
current code and the same config: benchmarks/reuse.py). Writes docs/results/sasrec-sweep.json
(benchmarks/results_doc.py makes docs/results.md's table from it). SASRec against the
baselines on test is in benchmarks/backbones.py and benchmarks/baselines.py.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reuse import command_line, plan_run, result_provenance, run_provenance
from ur4rec.config import RunConfig, dump_config, load_config
from ur4rec.io import atomic_write_json
from ur4rec.report_table import format_table
from ur4rec.train import run

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "sasrec-ml-100k-liked.yaml"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=str(ROOT / "runs" / "sasrec-sweep"))
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "sasrec-sweep.json"))
    args = parser.parse_args()
    rows = []
    for name, overrides in SWEEP.items():
        cfg = load_config(CONFIG, overrides)
        run_dir = train(cfg, Path(args.out) / name.replace(" ", "_").replace(",", ""))
        summary = json.loads((run_dir / "summary.json").read_text())
        rows.append(
            {
                "variant": name,
                "overrides": overrides,
                "valid ndcg@10": summary["valid"]["ndcg@10"],
                "valid hit@10": summary["valid"]["hit@10"],
                "best epoch": summary["best_epoch"],
                "train seconds": summary["train_seconds"],
                "provenance": run_provenance(run_dir),
            }
        )
        print(format_table(rows[-1:], ["variant", "valid ndcg@10", "best epoch"]), flush=True)
    command = command_line(__file__)
    atomic_write_json(
        args.results,
        {
            "provenance": result_provenance(command),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "config": str(CONFIG.relative_to(ROOT)),
            "rows": rows,
        },
    )
    print("\nml-100k-liked, validation split, full protocol:")
    print(format_table(rows, ["variant", "valid ndcg@10", "valid hit@10", "best epoch"]))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
