"""Does the text side help SASRec? UR4Rec's first stage over many seeds, compared per user.

    .venv/bin/python benchmarks/text_in_sasrec.py --seeds 42-49 --parallel 8 --threads 2

Trains the first stage of `configs/ur4rec-ml-100k-liked.yaml` (SASRec, 200 epochs, patience 10)
three ways for each seed: without item texts (SASRec alone), with the template item-text
embeddings added to its item embeddings (the default), and with the LLM item descriptions of
`../shared/seed-llm-texts/item_descriptions.json` instead. It evaluates valid and test under
the full and seed protocols and prints, per variant, mean ± sd over seeds, then each text
variant's paired difference from SASRec alone: the mean over seeds and users, a 95% interval
from resampling users (the same users for every seed), and a 95% t-interval over the seeds.

Runs go to OUT/VARIANT-sSEED (finished ones of the current code and config are read again,
unfinished ones resumed, others set aside and retrained: benchmarks/reuse.py); each keeps its
per-user ranks in ranks.npz. Choose by the valid rows; test is for reporting.
"""

from __future__ import annotations

import argparse
import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import yaml

from compare_runs import CASES, parse_seeds, print_comparison
from reuse import (
    cached_ranks,
    command_line,
    merge_rows,
    plan_run,
    run_provenance,
    train_in_subprocess,
    wanted_config,
)
from ur4rec_quality import VARIANTS_FILE, slug

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "ur4rec-ml-100k-liked.yaml"
SHARED_ITEMS = ROOT.parent / "shared" / "seed-llm-texts" / "item_descriptions.json"
# The first stage of the prior-only variant: SASRec pretraining alone.
STAGE_1 = "stages=" + json.dumps(
    yaml.safe_load(VARIANTS_FILE.read_text(encoding="utf-8"))["stage_lists"]["prior_only"][:1]
)
BASE = "SASRec alone"


def variants(item_texts: Path) -> dict[str, list[str]]:
    return {
        BASE: ["fusion.sasrec_text_features=false"],
        "SASRec + template item texts": [],
        "SASRec + LLM item texts": [f"text.item_texts={item_texts}"],
    }


def train_and_rank(
    name: str, overrides: list[str], seed: int, out: Path, data_dir: str | None, threads: int
) -> dict[str, np.ndarray]:
    """Trains (or resumes, or re-reads) one run; returns its per-user ranks per case."""
    run_dir = out / f"{slug(name)}-s{seed}"
    overrides = [f"seed={seed}", STAGE_1, *overrides]
    plan = plan_run(run_dir, wanted_config(CONFIG, overrides))
    if plan != "reuse":
        train_in_subprocess(run_dir, plan, CONFIG, overrides, threads, data_dir)
    return cached_ranks(run_dir, CASES, data_dir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="42-44", help="e.g. 42-49 or 42,43,44")
    parser.add_argument("--out", default="runs/text-in-sasrec")
    parser.add_argument("--data-dir")
    parser.add_argument("--item-texts", default=str(SHARED_ITEMS))
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--draws", type=int, default=2000, help="bootstrap resamples")
    parser.add_argument("--results", default=str(ROOT / "docs" / "results" / "comparisons.jsonl"))
    args = parser.parse_args()
    seeds = parse_seeds(args.seeds)
    cases = variants(Path(args.item_texts).resolve())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(name, seed) for name in cases for seed in seeds]
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = {
            job: pool.submit(
                train_and_rank, job[0], cases[job[0]], job[1], out, args.data_dir, args.threads
            )
            for job in jobs
        }
        ranks = {job: future.result() for job, future in futures.items()}
    print(f"ml-100k-liked, UR4Rec stage 1 (SASRec), seeds {args.seeds}: NDCG@10, Hit@10")
    rows = print_comparison({n: [ranks[(n, s)] for s in seeds] for n in cases}, BASE, args.draws)
    command = command_line(__file__)
    origins = [run_provenance(out / f"{slug(n)}-s{s}") for n, s in jobs]
    for row in rows:
        row.update(seeds=args.seeds, command=command, run_provenance=origins)
    merge_rows(Path(args.results), rows, ("a", "b", "seeds", "split", "protocol"))
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
