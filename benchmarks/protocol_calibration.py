"""Fusion weights chosen on the report's own protocol: does it lift its Hit@10?

    .venv/bin/python benchmarks/protocol_calibration.py --seeds 43-45

The default UR4Rec calibrates SASRec's and the EASE prior's fusion weights on validation full
NDCG@10. The report judges Hit@10 against 99 sampled items (the 1+99 protocol), so this reads
the default runs of benchmarks/ur4rec_quality.py (runs/ur4rec-quality/DATASET-default-sSEED)
and chooses the weights again over the same grid, by validation 1+99 Hit@10 (and NDCG@10),
optionally with a popularity term (c times the per-item z-score of log(1 + training count):
under sampling, the negatives are mostly rare items). Each choice is made on validation; its
test figures under both protocols are printed once. Nothing here changes the model. Writes
docs/results/protocol-calibration.json.
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compare_runs import parse_seeds
from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.splits import interaction_counts, make_split
from ur4rec.eval.compare import ndcg_at
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.measures import SAMPLED_99
from ur4rec.models.fusion import standardise
from ur4rec.models.ur4rec import PRIOR_GRID, SASREC_GRID
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "protocol-calibration.json"
POPULARITY = (0.0, 0.1, 0.2, 0.3, 0.5)
# (name, protocol of the validation figure, its metric, popularity term allowed)
CHOICES = [
    ("full NDCG@10 (the default's choice)", "full", "ndcg@10", False),
    ("1+99 Hit@10", SAMPLED_99, "hit@10", False),
    ("1+99 Hit@10, with popularity", SAMPLED_99, "hit@10", True),
    ("1+99 NDCG@10, with popularity", SAMPLED_99, "ndcg@10", True),
]


class _Replayed:
    """The cached branch scores of each batch, in the evaluator's order, fused anew."""

    def __init__(self, model: Any, cached: list[dict[str, torch.Tensor]], extra: Any) -> None:
        self.model, self.cached, self.extra, self.batch = model, cached, extra, 0
        # The model's rule for the user's own items under 1+99 (ranked last), which the
        # evaluator reads from the scorer it is given.
        self.seen_items_last = model.seen_items_last

    def score(self, batch: Any) -> torch.Tensor:
        out = dict(self.cached[self.batch])
        self.batch += 1
        fused = self.model.combine(out)
        return fused if self.extra is None else fused + self.extra


def _figures(evaluator: Evaluator, scorer: Any) -> dict[str, float]:
    ranks = evaluator.ranks(scorer).numpy()
    return {"hit@10": float((ranks < 10).mean()), "ndcg@10": float(ndcg_at(ranks).mean())}


@torch.inference_mode()
def one_run(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir)
    split = make_split(dataset, cfg.data.scheme)
    model.eval()
    model.set_objective("fused")
    counts = torch.as_tensor(interaction_counts(dataset, split.train)).float()
    popularity = standardise(torch.log1p(counts)[None])[0]
    cases = {}
    for part in ("valid", "test"):
        for protocol in ("full", SAMPLED_99):
            evaluator = Evaluator(dataset, split, part, protocol)
            cases[part, protocol] = (
                evaluator,
                [model.branch_scores(b) for _, b in evaluator.batches()],
            )

    def measure(point: tuple[float, float, float], part: str) -> dict[str, dict[str, float]]:
        weight, prior, pop = point
        model.apply_calibration({"sasrec_weight": weight, "prior_weight": prior})
        extra = pop * popularity if pop else None
        return {
            protocol: _figures(evaluator, _Replayed(model, cached, extra))
            for (p, protocol), (evaluator, cached) in cases.items()
            if p == part
        }

    grid = {point: measure(point, "valid") for point in itertools.product(
        SASREC_GRID, PRIOR_GRID, POPULARITY)}  # fmt: skip
    rows = []
    for name, protocol, metric, with_pop in CHOICES:
        allowed = [p for p in grid if with_pop or p[2] == 0.0]
        best = max(allowed, key=lambda p: grid[p][protocol][metric])
        rows.append({
            "choice": name, "sasrec_weight": best[0], "prior_weight": best[1],
            "popularity_weight": best[2], "valid": grid[best], "test": measure(best, "test"),
        })  # fmt: skip
    return {"run": str(run_dir.relative_to(ROOT)), "rows": rows,
            "provenance": run_provenance(run_dir)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="43-45")
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    runs = [ROOT / "runs" / "ur4rec-quality" / f"{args.dataset}-default-s{s}"
            for s in parse_seeds(args.seeds)]  # fmt: skip
    for run in runs:
        if not (run / "summary.json").is_file():
            raise SystemExit(f"{run} is missing: run benchmarks/ur4rec_quality.py first")
    results = [one_run(run, args.data_dir) for run in runs]
    atomic_write_json(OUT, {"dataset": args.dataset, "runs": results,
                            "provenance": result_provenance(command_line(__file__))})  # fmt: skip
    for name, *_ in CHOICES:
        cells = [next(r for r in res["rows"] if r["choice"] == name) for res in results]
        valid = np.mean([c["valid"][SAMPLED_99]["hit@10"] for c in cells])
        test = np.mean([c["test"][SAMPLED_99]["hit@10"] for c in cells])
        full = np.mean([c["test"]["full"]["ndcg@10"] for c in cells])
        points = ", ".join(
            f"{c['sasrec_weight']:g}/{c['prior_weight']:g}/{c['popularity_weight']:g}"
            for c in cells
        )
        print(f"{name:<40} valid 1+99 Hit@10 {valid:.4f}  test 1+99 Hit@10 {test:.4f}  "
              f"test full NDCG@10 {full:.4f}  (SASRec/prior/popularity: {points})")  # fmt: skip
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
