"""Does fusing two strong sequence models help at all here? Standardised-score ensembles of the
stage-1 SASRec models (SASRec + item texts) of the quality benchmark's default runs.

    .venv/bin/python benchmarks/ensemble_check.py --runs runs/ur4rec-quality --seeds 42,43,44

Needs `benchmarks/ur4rec_quality.py --variants default --seeds 42,43,44` first, on the current
code (a run of other code is refused). Prints NDCG@10 of each single model, of the first two
fused, and of all of them fused, for validation and test under the full and 1+99 protocols: a
ceiling check for what late fusion of the retriever could add. Writes
docs/results/ensemble.json (benchmarks/results_doc.py makes docs/results.md's table from it).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from reuse import command_line, result_provenance, run_provenance
from ur4rec.config import load_config
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.prepare import open_dataset
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.measures import SAMPLED_99
from ur4rec.models.fusion import standardise
from ur4rec.runs import build
from ur4rec.runs.layout import load_state_into, run_stale_reasons

ROOT = Path(__file__).resolve().parent.parent


class Ensemble:
    def __init__(self, models: list[torch.nn.Module]) -> None:
        self.models = models
        # The evaluator ranks a user's own items last under 1+99 for a scorer that says so, as
        # it does for the members; the ensemble must follow the same rule to compare with them.
        self.seen_items_last = all(getattr(m, "seen_items_last", False) for m in models)

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        return sum(standardise(m.score(batch)) for m in self.models)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", default="runs/ur4rec-quality")
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--data-dir")
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "ensemble.json"))
    args = parser.parse_args()
    models, origins = [], []
    for seed in args.seeds.split(","):
        run = Path(args.runs) / f"{args.dataset}-default-s{seed}"
        reasons = run_stale_reasons(run)
        if reasons:
            raise SystemExit(
                f"{run}: {'; '.join(reasons)}; run benchmarks/ur4rec_quality.py --variants "
                f"default --seeds {args.seeds} first"
            )
        origins.append(run_provenance(run))
        cfg = load_config(run / "config.yaml")
        dataset = open_dataset(cfg.data.dataset, root=args.data_dir)
        model, split, _ = build(cfg, dataset, args.data_dir)
        load_state_into(model, run / "stages" / "1-pretrain_sasrec" / "best.pt")
        model.eval()
        model.objective = "sasrec"
        models.append(model)
    print(f"NDCG@10 of stage-1 SASRec models, seeds {args.seeds}, {args.dataset}")
    rows = []
    for part in ("valid", "test"):
        for protocol in ("full", SAMPLED_99):
            evaluator = Evaluator(dataset, split, part, protocol)
            single = [evaluator.evaluate(m)["ndcg@10"] for m in models]
            pair = evaluator.evaluate(Ensemble(models[:2]))["ndcg@10"]
            every = evaluator.evaluate(Ensemble(models))["ndcg@10"]
            rows.append({"split": part, "protocol": protocol, "single": single,
                         "first two fused": pair, "all fused": every})  # fmt: skip
            print(
                f"{part:<5} {protocol:<4}  single "
                + " ".join(f"{s:.4f}" for s in single)
                + f" (mean {statistics.mean(single):.4f})  first two fused {pair:.4f}  "
                f"all fused {every:.4f}"
            )
    command = command_line(__file__)
    atomic_write_json(
        args.results,
        {
            "provenance": result_provenance(command),
            "run_provenance": origins,
            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": args.dataset,
            "seeds": args.seeds,
            "rows": rows,
        },
    )
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
