"""The user's own items under the report's 1+99 protocol: scored, or ranked last?

    .venv/bin/python benchmarks/seen_items.py --dataset ml-100k-liked --seeds 43-45

The report's protocol (sampled-with-history:99) draws its 99 negatives from the whole
catalogue, so a user's own earlier items can stand against the target. Full ranking leaves
them out, and so does the service; ``model.seen_items`` (auto: ranked last unless the training
data repeats items) makes the sampled protocol do the same. This reads the default runs of
benchmarks/ur4rec_quality.py (RUNS/DATASET-default-sSEED), the fused model and its stage-1
SASRec, plus the EASE-recent, EASE and popularity baselines, and measures each with the
user's items scored, ranked last, and under sampled:99 (negatives drawn outside the history).
Paired test Hit@10 intervals: fused ranked-last against fused scored, and fused against
SASRec under the rule. The rule is a fixed choice (decided on validation), not tuned; nothing
retrains. Writes docs/results/seen-items.json (one entry per dataset).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compare_runs import parse_seeds
from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.splits import make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.measures import SAMPLED_99
from ur4rec.runs.layout import load_state_into
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results" / "seen-items.json"
# (case, protocol, rank the user's own items last)
CASES = [
    ("scored", SAMPLED_99, False),
    ("last", SAMPLED_99, True),
    ("sampled:99", "sampled:99", False),
]
BASELINES = ("ease-recent", "ease", "pop")


def _ranks(evaluator: Evaluator, scorer: Any, last: bool) -> np.ndarray:
    before = getattr(scorer, "seen_items_last", False)
    scorer.seen_items_last = last
    try:
        return evaluator.ranks(scorer).numpy()
    finally:
        scorer.seen_items_last = before


def _figures(ranks: np.ndarray) -> dict[str, float]:
    return {"hit@10": float((ranks < 10).mean()), "ndcg@10": float(ndcg_at(ranks).mean())}


@torch.inference_mode()
def measure(models: dict[str, Any], dataset: Any, split: Any) -> dict[str, Any]:
    """{model: {part: {case: figures}}} and the test ranks {model: {case: ranks}}."""
    figures: dict[str, Any] = {name: {} for name in models}
    ranks: dict[str, dict[str, np.ndarray]] = {name: {} for name in models}
    for part in ("valid", "test"):
        evaluators = {p: Evaluator(dataset, split, part, p) for p in {c[1] for c in CASES}}
        for name, model in models.items():
            cells = figures[name].setdefault(part, {})
            for case, protocol, last in CASES:
                r = _ranks(evaluators[protocol], model, last)
                cells[case] = _figures(r)
                if part == "test":
                    ranks[name][case] = r
    return {"figures": figures, "ranks": ranks}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="43-45")
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--runs", default=str(ROOT / "runs" / "ur4rec-quality"))
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = parse_seeds(args.seeds)
    runs = [Path(args.runs) / f"{args.dataset}-default-s{s}" for s in seeds]
    for run in runs:
        if not (run / "summary.json").is_file():
            raise SystemExit(f"{run} is missing: run benchmarks/ur4rec_quality.py first")
    per_seed, hit = [], {"fused": {}, "sasrec": {}}
    baselines: dict[str, Any] | None = None
    for seed, run in zip(seeds, runs, strict=True):
        cfg, dataset, fused = load_run(run, args.data_dir)
        _, _, sasrec = load_run(run, args.data_dir)
        load_state_into(sasrec, run / "stages" / "1-pretrain_sasrec" / "best.pt")
        sasrec.set_objective("sasrec")
        sasrec.eval()
        split = make_split(dataset, cfg.data.scheme)
        out = measure({"fused": fused, "sasrec": sasrec}, dataset, split)
        per_seed.append({"seed": seed, "run": run.name, "figures": out["figures"],
                         "provenance": run_provenance(run)})  # fmt: skip
        for name in hit:
            for case, r in out["ranks"][name].items():
                hit[name].setdefault(case, []).append((r < 10).astype(np.float64))
        if baselines is None:  # deterministic: once per dataset
            models = {name: build_baseline(name, dataset, split, root=args.data_dir)
                      for name in BASELINES}  # fmt: skip
            baselines = measure(models, dataset, split)["figures"]
    intervals = {
        "fused last - fused scored": paired_difference(
            np.stack(hit["fused"]["last"]), np.stack(hit["fused"]["scored"])),
        "fused - sasrec, both last": paired_difference(
            np.stack(hit["fused"]["last"]), np.stack(hit["sasrec"]["last"])),
    }  # fmt: skip
    models: dict[str, Any] = {}
    for name in ("fused", "sasrec"):
        models[name] = {
            part: {case: {metric: float(np.mean([s["figures"][name][part][case][metric]
                                                 for s in per_seed]))
                          for metric in ("hit@10", "ndcg@10")}
                   for case, _, _ in CASES}
            for part in ("valid", "test")
        }  # fmt: skip
    models.update(baselines or {})
    entry = {
        "seeds": seeds,
        "models": models,
        "test_hit10_intervals": {k: vars(v) for k, v in intervals.items()},
        "runs": per_seed,
        "provenance": result_provenance(command_line(__file__)),
    }
    stored = json.loads(OUT.read_text(encoding="utf-8")) if OUT.is_file() else {}
    stored[args.dataset] = entry
    atomic_write_json(OUT, stored)
    print(f"{args.dataset}, Hit@10 / NDCG@10 (fused and SASRec: mean over seeds {args.seeds})")
    for name, parts in models.items():
        for part in ("valid", "test"):
            cells = "  ".join(
                f"{case} {parts[part][case]['hit@10']:.4f}/{parts[part][case]['ndcg@10']:.4f}"
                for case, _, _ in CASES
            )
            print(f"{name:<12} {part:<5} {cells}")
    for label, diff in intervals.items():
        print(f"test Hit@10, {label}: {diff}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
