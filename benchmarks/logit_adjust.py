"""Logit adjustment (``loss.logit_adjust``) on the leave-one-out split, by group, validation only.

    .venv/bin/python benchmarks/logit_adjust.py

Trains SASRec (ids only, configs/cold/sasrec.yaml) and the main job's UR4Rec
(configs/ur4rec-ml-100k-liked.yaml) on ml-100k-liked's leave-one-out split, seed 42, with the
training softmax adjusted by tau x log(the item's share of training interactions) for each tau
of a grid, and prints validation NDCG@10 (full ranking) for all users and by group (the
target's training interactions: tail 1-19, head >= 20; the history's length). For each run it
also traces the rare-item trade-off: a bonus d added to the scores of candidates with 1-19
training interactions, as benchmarks/cold_fusion.py does for the plain run. Text-kNN's
validation figures stand beside them: the rare-item rival.

The choice of tau (the grid's best validation NDCG@10 over all users, per model) is made
here on validation; benchmarks/cold_start.py ``--logit-adjust TAU`` measures a tau on test
over three seeds.

A declared rare-item exposure rule, for the goal that the fused model beat text-kNN on rare
targets: among the fused runs' (tau, bonus) settings (bonus 0 included) whose validation tail
NDCG@10 is above text-kNN's, the one with the highest validation head NDCG@10 (the cheapest
in head targets). With ``--test-runs DIR`` (benchmarks/cold_start.py's leave-one-out runs:
``ur4rec-default-sS`` and ``ur4rec-default-la-sS``, the latter trained with the chosen tau),
that one setting is then measured on test over ``--test-seeds``, once, paired per user with
text-kNN on the tail and cold groups and with the plain fused model on every group. The bonus
is not part of the model: this measures what the trade-off costs. Runs are reused while they
are runs of the current code and config (benchmarks/reuse.py). Writes
docs/results/logit-adjust.json.
"""

from __future__ import annotations

import argparse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cold_fusion import Adjusted, figures
from cold_start import group_ndcg, paired, summarise
from reuse import (
    command_line,
    plan_run,
    result_provenance,
    run_provenance,
    train_in_subprocess,
    wanted_config,
)
from ur4rec.config import load_config
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import interaction_counts, make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.provenance import text_hash
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
DATASET = "ml-100k-liked"
SCHEME = "leave-one-out"
MODELS = {
    "sasrec": (ROOT / "configs" / "cold" / "sasrec.yaml", (0.0, 0.3, 0.6, 1.0)),
    "ur4rec": (ROOT / "configs" / "ur4rec-ml-100k-liked.yaml", (0.0, 0.3, 0.5)),
}
BONUSES = (0.5, 0.75, 1.0)


def train(name: str, tau: float, seed: int, out: Path, threads: int) -> Path:
    config = MODELS[name][0]
    run_dir = out / f"{name}-tau{tau:g}-s{seed}"
    overrides = [f"data.scheme={SCHEME}", f"seed={seed}", f"loss.logit_adjust={tau:g}"]
    plan = plan_run(run_dir, wanted_config(config, overrides))
    if plan != "reuse":
        seconds = train_in_subprocess(run_dir, plan, config, overrides, threads)
        print(f"trained {run_dir} in {seconds:.0f} s", flush=True)
    return run_dir


def measure_on_test(
    runs: Path, seeds: list[int], tau: float, bonus: float, rare: torch.Tensor, knn: Any
) -> dict[str, Any]:
    """The exposure setting (fused run trained with ``tau``, plus ``bonus`` for rare items) on
    test, paired with text-kNN and with the plain fused model (tau 0, no bonus)."""
    dataset = open_dataset(DATASET)
    evaluator = Evaluator(dataset, make_split(dataset, SCHEME), "test")
    chosen, plain, dirs = [], [], []
    for seed in seeds:
        for name, out in (("ur4rec-default-la" if tau > 0 else "ur4rec-default", chosen),
                          ("ur4rec-default", plain)):  # fmt: skip
            run_dir = runs / f"{name}-s{seed}"
            cfg = load_config(run_dir / "config.yaml")
            want = tau if out is chosen else 0.0
            if cfg.loss.logit_adjust != want or cfg.seed != seed or cfg.data.scheme != SCHEME:
                raise SystemExit(f"{run_dir}: not a {SCHEME} run of seed {seed}, tau {want:g}")
            model = load_run(run_dir)[2]
            scorer = Adjusted(model, lambda batch, b=bonus if out is chosen else 0.0: b * rare)
            out.append(evaluator.ranks(scorer).numpy())
            dirs.append(run_dir)
    knn_ranks = np.stack([evaluator.ranks(knn).numpy()] * len(seeds))
    chosen_ranks, plain_ranks = np.stack(chosen), np.stack(plain)
    groups = evaluator.groups
    everyone = np.ones(len(evaluator), dtype=bool)
    comparisons = []
    against = (
        ("text-knn", knn_ranks, ("tail", "cold")),
        ("ur4rec-default", plain_ranks, ("all", "head", "tail", "short")),
    )
    for b, ranks_b, names in against:
        for g in names:
            mask = groups.get(g, everyone)
            if mask.any():
                comparisons.append({"b": b, "group": g, **paired(chosen_ranks, ranks_b, mask)})
    return {
        "seeds": seeds,
        "rows": {
            "exposure": summarise([group_ndcg(r, groups) for r in chosen_ranks]),
            "ur4rec-default": summarise([group_ndcg(r, groups) for r in plain_ranks]),
            "text-knn": summarise([group_ndcg(r, groups) for r in knn_ranks[:1]]),
        },
        "comparisons": comparisons,
        "dirs": dirs,
    }


@torch.inference_mode()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "logit-adjust")
    parser.add_argument("--test-runs", type=Path, help="cold_start.py's leave-one-out runs")
    parser.add_argument("--test-seeds", default="42,43,44")
    parser.add_argument("--results", type=Path,
                        default=ROOT / "docs" / "results" / "logit-adjust.json")  # fmt: skip
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, tau) for name, (_, taus) in MODELS.items() for tau in taus]
    with ThreadPoolExecutor(args.parallel) as pool:
        dirs = list(pool.map(lambda j: train(*j, args.seed, args.out, args.threads), jobs))

    dataset = open_dataset(DATASET)
    split = make_split(dataset, SCHEME)
    evaluator = Evaluator(dataset, split, "valid")
    counts = torch.as_tensor(interaction_counts(dataset, split.train))
    rare = ((counts >= 1) & (counts < evaluator.group_spec.tail_below)).float()
    knn = build_baseline("text-knn", dataset, split)
    rows = [{"model": "text-knn", "tau": None, "valid": figures(evaluator, knn), "bonus": {}}]
    for (name, tau), run_dir in zip(jobs, dirs, strict=True):
        model = load_run(run_dir)[2]
        row = {"model": name, "tau": tau, "valid": figures(evaluator, model), "bonus": {}}
        for bonus in BONUSES:
            scorer = Adjusted(model, lambda batch, b=bonus: b * rare)
            row["bonus"][f"{bonus:g}"] = figures(evaluator, scorer)
        rows.append(row)
        print(name, f"tau {tau:g}", row["valid"], flush=True)
    chosen = {
        name: max((r for r in rows if r["model"] == name), key=lambda r: r["valid"]["all"])["tau"]
        for name in MODELS
    }
    fused = [r for r in rows if r["model"] == "ur4rec"]
    options = [(r["tau"], 0.0, r["valid"]) for r in fused]
    options += [(r["tau"], float(b), cell) for r in fused for b, cell in r["bonus"].items()]
    rival = rows[0]["valid"]["tail"]
    passing = [o for o in options if o[2]["tail"] > rival]
    exposure: dict[str, Any] = {"rival_valid_tail": rival}
    if passing:
        tau, bonus, cell = max(passing, key=lambda o: o[2]["head"])
        exposure.update(tau=tau, bonus=bonus, valid=cell)
        print(f"exposure rule (validation): tau {tau:g}, rare bonus {bonus:g}: {cell}")
        if args.test_runs is not None:
            seeds = [int(x) for x in args.test_seeds.split(",")]
            exposure["test"] = measure_on_test(args.test_runs, seeds, tau, bonus, rare, knn)
            dirs += exposure["test"].pop("dirs")
    configs = [(d / "config.yaml").read_text() for d in dirs]
    users = {"all": len(evaluator), **{g: int(m.sum()) for g, m in evaluator.groups.items()}}
    document = {
        "dataset": DATASET, "scheme": SCHEME, "seed": args.seed, "part": "valid",
        "protocol": "full", "users": users, "rows": rows, "chosen": chosen,
        "exposure": exposure,
        "runs": {d.name: run_provenance(d) for d in dirs},
        "provenance": result_provenance(command_line(__file__), [text_hash(c) for c in configs],
                                        [dataset.content_hash]),
    }  # fmt: skip
    atomic_write_json(args.results, document)
    print("chosen on validation (all users):", chosen)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
