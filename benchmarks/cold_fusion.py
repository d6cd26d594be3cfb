"""Why the fused UR4Rec buries new items: its branches and three repairs, on validation only.

    .venv/bin/python benchmarks/cold_fusion.py

Reads two runs benchmarks/cold_start.py trained (seed 42): UR4Rec's cold config on the
cold-items split, and the main job's config on the leave-one-out split. On the validation
part, NDCG@10 (full ranking) for all users and by group, of:

- each branch alone (SASRec, the retriever) and the fused model, with its calibrated EASE
  prior and without it;
- a new item's prior column filled from its k text-nearest trained items (k = 5, 20, 50;
  softmax over cosine / 0.05), at prior weights 0.1 to 0.5;
- a constant bonus b added to new items' fused scores;
- (leave-one-out) a text-kNN branch added to the fused scores: c times its per-user z-score;
  and a bonus for rare candidates (1-19 training interactions), with or without that branch.

Nothing here is chosen on test, and nothing of it is in the model: these are the repairs
docs/results.md reports as tried and dropped. Writes docs/results/cold-fusion.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.splits import interaction_counts, make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.compare import ndcg_at
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.models.fusion import standardise
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "cold-start"
OUT = ROOT / "docs" / "results" / "cold-fusion.json"


class Adjusted(torch.nn.Module):
    """The model's scores plus ``extra(batch)`` (a scorer for the evaluator)."""

    def __init__(self, model: Any, extra: Any) -> None:
        super().__init__()
        self.model, self.extra = model, extra

    def score(self, batch: Any) -> torch.Tensor:
        return self.model.score(batch) + self.extra(batch)


def figures(evaluator: Evaluator, scorer: Any) -> dict[str, float]:
    ranks = evaluator.ranks(scorer).numpy()
    groups = {"all": np.ones(len(ranks), dtype=bool), **evaluator.groups}
    return {g: round(float(ndcg_at(ranks[m]).mean()), 4) for g, m in groups.items() if m.any()}


@torch.inference_mode()
def cold_items(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir)
    evaluator = Evaluator(dataset, make_split(dataset, cfg.data.scheme), "valid")
    out: dict[str, Any] = {}
    for objective in ("sasrec", "retriever"):
        model.set_objective(objective)
        out[f"{objective} alone"] = figures(evaluator, model)
    model.set_objective("fused")
    weight = float(model.fusion.prior_weight)
    out[f"fused, prior weight {weight:g} (calibrated)"] = figures(evaluator, model)
    model.fusion.set_prior_weight(0.0)
    out["fused, no prior"] = figures(evaluator, model)
    model.fusion.set_prior_weight(weight)

    new = model.fusion.new_items
    for bonus in (0.5, 1.0, 1.5, 2.0):
        out[f"new-item bonus {bonus:g}"] = figures(
            evaluator, Adjusted(model, lambda batch, b=bonus: b * new.float())
        )

    known = model.known
    text = F.normalize(model.retriever.item_text, dim=1)
    similar = text[~known] @ text[known].T
    trained, fresh = torch.nonzero(known).squeeze(1), torch.nonzero(~known).squeeze(1)
    fitted, saved_new = model.prior.clone(), model.fusion.new_items
    model.fusion.new_items = None  # let the filled-in prior count for new items
    for k in (5, 20, 50):
        top = similar.topk(k, dim=1)
        w = torch.softmax(top.values / 0.05, dim=1)
        prior = fitted.clone()
        prior[:, fresh] = (fitted[:, trained[top.indices]] * w[None]).sum(-1)
        model.prior = prior
        for p in (0.1, 0.2, 0.3, 0.5):
            model.fusion.set_prior_weight(p)
            out[f"prior filled from {k} text neighbours, weight {p:g}"] = figures(evaluator, model)
    model.prior, model.fusion.new_items = fitted, saved_new
    model.fusion.set_prior_weight(weight)
    return out


@torch.inference_mode()
def text_knn_branch(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir)
    split = make_split(dataset, cfg.data.scheme)
    evaluator = Evaluator(dataset, split, "valid")
    knn = build_baseline("text-knn", dataset, split, root=data_dir)
    out = {
        f"text-kNN branch, weight {c:g}": figures(
            evaluator, Adjusted(model, lambda batch, c=c: c * standardise(knn.score(batch)))
        )
        for c in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
    }
    # The trade-off frontier on rare items: a bonus d (plus c times the text-kNN z-score)
    # for candidates with 1-19 training interactions only.
    counts = torch.as_tensor(interaction_counts(dataset, split.train))
    tail = ((counts >= 1) & (counts < evaluator.group_spec.tail_below)).float()
    for c in (0.0, 0.25, 0.5):
        for d in (0.5, 0.75, 1.0, 1.25):
            out[f"tail-item bonus {d:g}, text-kNN weight {c:g}"] = figures(
                evaluator,
                Adjusted(
                    model,
                    lambda batch, c=c, d=d: (c * standardise(knn.score(batch)) + d) * tail,
                ),
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    cold_run = RUNS / "cold-items" / "ur4rec-s42"
    loo_run = RUNS / "leave-one-out" / "ur4rec-default-s42"
    for run in (cold_run, loo_run):
        if not (run / "summary.json").is_file():
            raise SystemExit(f"{run} is missing: run benchmarks/cold_start.py first")
    document = {
        "cold-items": cold_items(cold_run, args.data_dir),
        "leave-one-out": text_knn_branch(loo_run, args.data_dir),
        "runs": {str(r.relative_to(ROOT)): run_provenance(r) for r in (cold_run, loo_run)},
        "provenance": result_provenance(command_line(__file__)),
    }
    atomic_write_json(OUT, document)
    for split in ("cold-items", "leave-one-out"):
        print(f"{split}, validation NDCG@10:")
        for name, cells in document[split].items():
            print(f"  {name:<48} " + "  ".join(f"{g} {v:.4f}" for g, v in cells.items()))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
