"""The baselines, tuned on validation: EASE's lambda sweep, ease-recent's window sweep, RP3beta's
alpha x beta sweep and the baseline table (popularity, EASE, ease-recent, text-kNN, RP3beta;
valid and test; every protocol named).

    .venv/bin/python benchmarks/baselines.py [--datasets ml-100k,ml-100k-liked]

For each dataset: validation NDCG@10 (full ranking) of EASE fitted on the training part for
every lambda of ur4rec.eval.baselines.EASE_L2_GRID and every window R (the last R items; 0:
the whole history). The library picks lambda per model on the same validation figures
(`ur4rec baseline ease` does it by itself); ease-recent's R is a constant chosen from this
sweep on ml-100k-liked. RP3beta's alpha and beta are chosen per dataset from its sweep over the
whole history, as `ur4rec baseline rp3beta` does. RP3beta's sweep is also run for every window
R (as `ur4rec baseline rp3beta --recent R` tunes it); the window with the best validation
NDCG@10 is then measured once on test, beside the table (it is not one of the table's
baselines). Then the table of every baseline on valid and test. Writes
docs/results/baselines.json (benchmarks/results_doc.py makes docs/results.md's tables from it).
Choose on the valid figures; test is for reporting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from reuse import command_line, result_provenance
from ur4rec.data.dataset import Dataset
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import Split, make_split
from ur4rec.eval.baselines import (
    BASELINES,
    EASE_L2_GRID,
    EASE_RECENT,
    TUNE_METRIC,
    best_rp3beta,
    build_baseline,
    describe_baseline,
    ease_sweep,
    rp3beta_sweep,
)
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.measures import SAMPLED_99
from ur4rec.report_table import format_table

ROOT = Path(__file__).resolve().parent.parent
WINDOWS = (1, 2, 3, 5, 8, 20, 0)  # 0: the whole history
PROTOCOLS = ("full", SAMPLED_99, "popsampled:100")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="ml-100k,ml-100k-liked")
    parser.add_argument("--data-dir")
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "baselines.json"))
    args = parser.parse_args()
    sweep, rp3_sweep, table, hashes, windowed = [], [], [], [], []
    for name in args.datasets.split(","):
        dataset = open_dataset(name, root=args.data_dir)
        hashes.append(dataset.content_hash)
        split = make_split(dataset)
        start = time.perf_counter()
        for recent in WINDOWS:
            for row in ease_sweep(dataset, split, recent):
                sweep.append({"dataset": name, "recent": recent, **row})
        print(f"{name}: EASE sweep over {len(EASE_L2_GRID)} lambdas x {len(WINDOWS)} windows "
              f"in {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        start = time.perf_counter()
        by_window = {w: rp3beta_sweep(dataset, split, recent=w) for w in WINDOWS}
        rp3_sweep += [{"dataset": name, "recent": w, **row}
                      for w, rows in by_window.items() for row in rows]  # fmt: skip
        print(f"{name}: RP3beta sweep over {len(by_window[0])} (alpha, beta) x {len(WINDOWS)} "
              f"windows in {time.perf_counter() - start:.0f} s", flush=True)  # fmt: skip
        alpha, beta = best_rp3beta(by_window[0])  # the choice `ur4rec baseline rp3beta` makes
        windowed.append(rp3beta_window(dataset, split, by_window))
        chosen = {"alpha": alpha, "beta": beta}
        models = {m: build_baseline(m, dataset, split, **(chosen if m == "rp3beta" else {}))
                  for m in BASELINES}  # fmt: skip
        for part in ("valid", "test"):
            for protocol in PROTOCOLS:
                evaluator = Evaluator(dataset, split, part, protocol)
                for model_name, model in models.items():
                    row = {"model": model_name, **evaluator.evaluate(model)}
                    table.append({**row, **describe_baseline(model)})
    command = command_line(__file__)
    result = {
        "provenance": result_provenance(command, data_hashes=hashes),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "tuned_on": "valid, full ranking, ndcg@10",
        "ease_recent": EASE_RECENT,
        "sweep": sweep,
        "rp3beta_sweep": rp3_sweep,
        "rp3beta_window": windowed,
        "table": table,
    }
    atomic_write_json(args.results, result)
    for name in args.datasets.split(","):
        rows = [r for r in sweep if r["dataset"] == name]
        grid = [{"lambda": f"{l2:g}", **{f"R={w}": f"{r['ndcg@10']:.4f}" for w in WINDOWS
                 for r in rows if r["lambda"] == l2 and r["recent"] == w}}
                for l2 in EASE_L2_GRID]  # fmt: skip
        print(f"\n{name}: validation NDCG@10 (full) of EASE over the last R items (0 = all)")
        print(format_table(grid, list(grid[0])))
    print()
    columns = ["dataset", "split", "protocol", "model", "lambda", "alpha", "beta", "hit@10",
               "ndcg@10", "mrr@10"]  # fmt: skip
    print(format_table(table, columns))
    print(format_table(windowed, ["dataset", "recent", "alpha", "beta", "valid_ndcg@10",
                                  "test_ndcg@10", "test_hit@10"]))  # fmt: skip
    print(f"wrote {args.results}")
    return 0


def rp3beta_window(
    dataset: Dataset, split: Split, by_window: dict[int, list[dict[str, float]]]
) -> dict[str, Any]:
    """The window whose best (alpha, beta) has the best validation NDCG@10 (ties: the longer
    window, 0 meaning all), measured once on test under full ranking."""
    best = {w: best_rp3beta(rows) for w, rows in by_window.items()}
    score = {w: next(r[TUNE_METRIC] for r in rows if (r["alpha"], r["beta"]) == best[w])
             for w, rows in by_window.items()}  # fmt: skip
    recent = max(score, key=lambda w: (score[w], w == 0, w))
    alpha, beta = best[recent]
    model = build_baseline("rp3beta", dataset, split, alpha=alpha, beta=beta, recent=recent)
    test = Evaluator(dataset, split, "test", "full").evaluate(model)
    return {"dataset": dataset.name, "recent": recent, "alpha": alpha, "beta": beta,
            f"valid_{TUNE_METRIC}": score[recent], "test_ndcg@10": test["ndcg@10"],
            "test_hit@10": test["hit@10"]}  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
