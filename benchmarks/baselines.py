"""The baselines, tuned on validation: EASE's lambda sweep, ease-recent's window sweep, RP3beta's
alpha x beta sweep and the baseline table (popularity, EASE, ease-recent, text-kNN, RP3beta;
valid and test; every protocol named).

    .venv/bin/python benchmarks/baselines.py [--datasets ml-100k,ml-100k-liked]

For each dataset: validation NDCG@10 (full ranking) of EASE fitted on the training part for
every lambda of ur4rec.eval.baselines.EASE_L2_GRID and every window R (the last R items; 0:
the whole history). The library picks lambda per model on the same validation figures
(`ur4rec baseline ease` does it by itself); ease-recent's R is a constant chosen from this
sweep on ml-100k-liked. RP3beta's alpha and beta are chosen per dataset from its sweep, as
`ur4rec baseline rp3beta` does. Then the table of every baseline on valid and test. Writes
docs/results/baselines.json (benchmarks/results_doc.py makes docs/results.md's tables from it).
Choose on the valid figures; test is for reporting.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from reuse import command_line, result_provenance
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import make_split
from ur4rec.eval.baselines import (
    BASELINES,
    EASE_L2_GRID,
    EASE_RECENT,
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
    sweep, rp3_sweep, table, hashes = [], [], [], []
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
        rp3 = rp3beta_sweep(dataset, split)
        rp3_sweep += [{"dataset": name, **row} for row in rp3]
        alpha, beta = best_rp3beta(rp3)  # the choice `ur4rec baseline rp3beta` makes
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
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
