"""Rare items through co-occurrence: UR4Rec with its RP3beta branch, leave-one-out, by group.

    .venv/bin/python benchmarks/rare_items.py --runs runs/cold-start/leave-one-out

Reads benchmarks/cold_start.py's leave-one-out runs of the main job's UR4Rec config
(``ur4rec-default-sS``, ``--default-ur4rec``) and gives each trained model the co-occurrence
branch (``fusion.cooccurrence: rp3beta``, models/cooccurrence.py, default settings). The
branch plays no part in training and is weighted after the other fusion weights, so this is
the model a run trained with the branch on ends with. Its three weights (every item, rare
items, rare items' bonus; the grids in models/ur4rec.py) are chosen on each seed's own
validation part two ways:

- ``calibrated``: as the model does after a fused stage, by all users' NDCG@10;
- ``exposure``: the declared rare-item rule of benchmarks/logit_adjust.py, for the goal that
  the fused model beat text-kNN on rare targets: among the grid's settings whose validation
  tail NDCG@10 is above text-kNN's, the one with the best validation head NDCG@10 (none
  passing: the calibrated one).

Then once on test (full ranking, ml-100k-liked): NDCG@10 and Hit@10 by group of the plain
fused model, both choices, RP3beta alone (the branch's own ranking) and text-kNN; paired per
user (seeds paired) with text-kNN on the tail and cold groups and with the plain fused model
on every group. Writes docs/results/rare-items.json; benchmarks/results_doc.py renders it.

Validation only, a question for the exposure rule: would text-kNN's own signal, added on the
rare and new items (KNN_WEIGHTS times its per-user z-score, and NEW_BONUSES more on new
items), buy tail at a lower head cost than co-occurrence alone? For each pair the rule is
applied again over the whole co-occurrence grid; nothing of it is tested.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cold_fusion import figures
from cold_start import group_ndcg, paired, summarise
from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.batches import HistoryBatch, last_items
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.models.cooccurrence import neighbour_scores
from ur4rec.models.fusion import standardise
from ur4rec.models.ur4rec import COOCCURRENCE_GRID, RARE_BONUS_GRID, RARE_WEIGHT_GRID, UR4Rec
from ur4rec.provenance import text_hash
from ur4rec.runs.checkpoint import load_checkpoint
from ur4rec.runs.layout import checkpoint_path, resolve_checkpoint
from ur4rec.runs.load import build, open_run, read_inputs

ROOT = Path(__file__).resolve().parent.parent
SCHEME = "leave-one-out"
ADDED = {"fusion.cooccurrence_weight", "fusion.rare_weight", "fusion.rare_bonus"}
KNN_WEIGHTS = (0.0, 0.15, 0.3, 0.5)  # text-kNN's z-score on rare and new items, validation only
NEW_BONUSES = (0.0, 0.5)  # and a bonus on new items
GROUPS = ("all", "warm", "cold", "tail", "head", "short", "long")


class Cooccurrence:
    """The model's co-occurrence branch alone, as a scorer."""

    def __init__(self, model: UR4Rec, recent: int) -> None:
        self.model, self.recent = model, recent

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        m = self.model
        assert m.cooc_indices is not None and m.cooc_weights is not None
        history = last_items(batch.items, self.recent)
        return neighbour_scores(m.cooc_indices, m.cooc_weights, history, m.n_items)


def with_branch(run_dir: Path) -> tuple[Any, Any, Any, UR4Rec]:
    """The run's trained model with the co-occurrence branch added (weights still to choose)."""
    cfg, dataset = open_run(run_dir)
    if cfg.model.name != "ur4rec" or cfg.data.scheme != SCHEME:
        raise SystemExit(f"{run_dir}: not a UR4Rec run on the {SCHEME} split")
    cfg.fusion.cooccurrence = "rp3beta"
    model, split, _ = build(cfg, dataset, None, read_inputs(run_dir))
    assert isinstance(model, UR4Rec)
    state = load_checkpoint(checkpoint_path(run_dir, resolve_checkpoint(run_dir, "final", "test")))
    missing, unexpected = model.load_state_dict(state["model"], strict=False)
    if unexpected or set(missing) - ADDED:
        raise SystemExit(f"{run_dir}: checkpoint does not fit: {missing} {unexpected}")
    model.set_objective(cfg.stages[-1].objective)
    return cfg, dataset, split, model.eval()


class WithTextKnn:
    """The fused model's scores replayed from cached branch scores, plus ``weight`` times
    text-kNN's per-user z-score on the rare and new items and ``bonus`` on the new ones."""

    def __init__(self, model: UR4Rec, cached: list[dict[str, torch.Tensor]],
                 knn: list[torch.Tensor], weight: float, bonus: float) -> None:  # fmt: skip
        self.model, self.cached, self.knn, self.batch = model, cached, knn, 0
        self.seen_items_last = model.seen_items_last
        new = model.fusion.new_items
        assert model.fusion.rare_items is not None
        self.rare = model.fusion.rare_items.bool() | (False if new is None else new)
        self.new = torch.zeros_like(self.rare) if new is None else new
        self.weight, self.bonus = weight, bonus

    def score(self, batch: HistoryBatch) -> torch.Tensor:
        out, z = dict(self.cached[self.batch]), self.knn[self.batch]
        self.batch += 1
        return self.model.combine(out) + self.rare * (self.weight * z) + self.new * self.bonus


def exposure_choice(
    sweep: list[tuple[dict[str, float], dict[str, float]]], rival_tail: float
) -> tuple[dict[str, float], dict[str, float]] | None:
    """The declared rule: the best validation head among the settings past the rival's tail."""
    passing = [s for s in sweep if s[1]["tail"] > rival_tail]
    return max(passing, key=lambda s: s[1]["head"]) if passing else None


def text_knn_frontier(
    model: UR4Rec, valid: Evaluator, knn: Any, rival_tail: float
) -> list[dict[str, Any]]:
    """For each text-kNN weight and new-item bonus, the exposure rule's choice over the
    co-occurrence grid (validation only)."""
    cached, z = [], []
    for _, batch in valid.batches():
        cached.append(model.branch_scores(batch))
        z.append(standardise(knn.score(batch)))
    out = []
    for weight in KNN_WEIGHTS:
        for bonus in NEW_BONUSES:
            sweep = []
            for chosen in grid():
                model.apply_calibration(chosen)
                sweep.append((chosen, figures(valid, WithTextKnn(model, cached, z, weight, bonus))))
            best = exposure_choice(sweep, rival_tail)
            out.append({
                "knn_weight": weight, "new_bonus": bonus,
                "passing": sum(s[1]["tail"] > rival_tail for s in sweep),
                "chosen": None if best is None else best[0],
                "valid": None if best is None else best[1],
                "best_all": max(s[1]["all"] for s in sweep),
            })  # fmt: skip
    return out


def grid() -> list[dict[str, float]]:
    return [
        {"cooccurrence_weight": w, "rare_weight": r, "rare_bonus": b}
        for w in COOCCURRENCE_GRID
        for r in RARE_WEIGHT_GRID
        for b in RARE_BONUS_GRID
    ]


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=Path, default=ROOT / "runs" / "cold-start" / SCHEME)
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--results", type=Path,
                        default=ROOT / "docs" / "results" / "rare-items.json")  # fmt: skip
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    ranks: dict[str, list[np.ndarray]] = {"ur4rec-default": [], "calibrated": [], "exposure": []}
    choices, dirs = [], []
    knn_ranks = cooc_ranks = None
    for seed in seeds:
        run_dir = args.runs / f"ur4rec-default-s{seed}"
        cfg, dataset, split, model = with_branch(run_dir)
        dirs.append(run_dir)
        valid, test = Evaluator(dataset, split, "valid"), Evaluator(dataset, split, "test")
        if knn_ranks is None:  # fitted, not trained: the same for every seed
            knn = build_baseline("text-knn", dataset, split)
            rival = figures(valid, knn)
            knn_ranks, knn_valid = test.ranks(knn).numpy(), rival
            alone = Cooccurrence(model, cfg.fusion.cooccurrence_recent)
            cooc_ranks, cooc_valid = test.ranks(alone).numpy(), figures(valid, alone)
        ranks["ur4rec-default"].append(test.ranks(model).numpy())
        sweep = []
        for chosen in grid():
            model.apply_calibration(chosen)
            sweep.append((chosen, figures(valid, model)))
        calibrated = model.calibrate_cooccurrence(valid, "ndcg@10").chosen
        rule = exposure_choice(sweep, knn_valid["tail"])
        exposure = rule[0] if rule is not None else calibrated
        frontier = text_knn_frontier(model, valid, knn, knn_valid["tail"])
        cells = {}
        for name, chosen in (("calibrated", calibrated), ("exposure", exposure)):
            model.apply_calibration(chosen)
            cells[name] = {"chosen": chosen, "valid": figures(valid, model)}
            ranks[name].append(test.ranks(model).numpy())
        print(seed, {n: (c["chosen"], c["valid"]) for n, c in cells.items()}, flush=True)
        choices.append({
            "seed": seed, **cells, "grid": len(sweep),
            "passing": sum(cell["tail"] > knn_valid["tail"] for _, cell in sweep),
            "sweep": [{"chosen": chosen, "valid": cell} for chosen, cell in sweep],
            "text_knn_frontier": frontier,
        })  # fmt: skip
    assert knn_ranks is not None and cooc_ranks is not None
    groups = test.groups
    everyone = np.ones(len(test), dtype=bool)
    stacked = {name: np.stack(r) for name, r in ranks.items()}
    knn_all = np.stack([knn_ranks] * len(seeds))
    rows = {name: summarise([group_ndcg(r, groups) for r in stacked[name]]) for name in ranks}
    rows["rp3beta"] = summarise([group_ndcg(cooc_ranks, groups)])
    rows["text-knn"] = summarise([group_ndcg(knn_ranks, groups)])
    comparisons = []
    for a in ("calibrated", "exposure"):
        against = (("text-knn", knn_all, ("tail", "cold")),
                   ("ur4rec-default", stacked["ur4rec-default"], GROUPS))  # fmt: skip
        for b, ranks_b, names in against:
            for g in names:
                mask = groups.get(g, everyone)
                if mask.any():
                    comparisons.append(
                        {"a": a, "b": b, "group": g, **paired(stacked[a], ranks_b, mask)}
                    )
    for c in comparisons:
        print(f"{c['a']} - {c['b']} {c['group']}: {c['text']}")
    for name, row in rows.items():
        print(name, {g: round(v["ndcg@10"], 4) for g, v in row.items()})
    configs = [(d / "config.yaml").read_text() for d in dirs]
    document = {
        "dataset": dataset.name, "scheme": SCHEME, "part": "test", "protocol": "full",
        "seeds": seeds, "rival_valid": knn_valid, "rp3beta_valid": cooc_valid,
        "choices": choices, "rows": rows, "comparisons": comparisons,
        "runs": {d.name: run_provenance(d) for d in dirs},
        "provenance": result_provenance(command_line(__file__), [text_hash(c) for c in configs],
                                        [dataset.content_hash]),
    }  # fmt: skip
    atomic_write_json(args.results, document)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
