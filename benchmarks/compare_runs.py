"""Two sets of runs, matched by seed, compared per user: is A really better than B?

    .venv/bin/python benchmarks/compare_runs.py \\
        --a "runs/ur4rec-quality/ml-100k-liked-default-s{seed}" \\
        --b "runs/text-in-sasrec/SASRec_alone-s{seed}" --seeds 42-44

For valid and test under the full and seed protocols: NDCG@10 and Hit@10 of A and B (mean ±
sd over seeds), and A - B in NDCG@10 with a 95% interval from resampling users and one across
seeds (eval/compare.py). Ranks are computed once per run and kept in its ranks.npz. The runs
must share the dataset and split; --a and --b are paths with {seed} in them.
"""

from __future__ import annotations

import argparse
import io
import statistics
from pathlib import Path

import numpy as np

from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.io import atomic_write_bytes
from ur4rec.measures import SAMPLED_99
from ur4rec.train.run import user_ranks

CASES = [(part, protocol) for part in ("valid", "test") for protocol in ("full", SAMPLED_99)]


def parse_seeds(text: str) -> list[int]:
    """'42-44,50' -> [42, 43, 44, 50]."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def cached_ranks(run_dir: Path, data_dir: str | None = None) -> dict[str, np.ndarray]:
    """The run's per-user ranks for CASES, from its ranks.npz or computed and stored there."""
    path = Path(run_dir) / "ranks.npz"
    wanted = {f"{part} {protocol}" for part, protocol in CASES}
    if path.is_file():
        with np.load(path) as stored:
            if wanted <= set(stored.files):
                return {key: stored[key] for key in wanted}
    ranks = user_ranks(Path(run_dir), CASES, data_dir=data_dir)
    buffer = io.BytesIO()
    np.savez(buffer, **ranks)
    atomic_write_bytes(path, buffer.getvalue())
    return ranks


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def print_comparison(
    names: dict[str, list[dict[str, np.ndarray]]], baseline: str, draws: int = 2000
) -> None:
    """``names``: label -> per-seed ranks (same seeds, same order); each label other than
    ``baseline`` is compared with it."""
    for part, protocol in CASES:
        key = f"{part} {protocol}"
        print(f"\n{key}")
        width = max(len(n) for n in names)
        for name, runs in names.items():
            ndcg = [float(ndcg_at(r[key]).mean()) for r in runs]
            hit = [float((r[key] < 10).mean()) for r in runs]
            print(f"  {name:<{width}}  NDCG@10 {mean_sd(ndcg)}  Hit@10 {mean_sd(hit)}")
        base = np.stack([ndcg_at(r[key]) for r in names[baseline]])
        for name, runs in names.items():
            if name != baseline:
                diff = paired_difference(np.stack([ndcg_at(r[key]) for r in runs]), base, draws)
                print(f"  {name} - {baseline}: {diff}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="run path with {seed}")
    parser.add_argument("--b", required=True, help="run path with {seed}")
    parser.add_argument("--seeds", default="42-44")
    parser.add_argument("--data-dir")
    parser.add_argument("--draws", type=int, default=2000)
    args = parser.parse_args()
    if "{seed}" not in args.a or "{seed}" not in args.b:
        parser.error("--a and --b must contain {seed}")
    seeds = parse_seeds(args.seeds)
    names = {
        "A": [cached_ranks(Path(args.a.format(seed=s)), args.data_dir) for s in seeds],
        "B": [cached_ranks(Path(args.b.format(seed=s)), args.data_dir) for s in seeds],
    }
    print(f"A = {args.a}\nB = {args.b}\nseeds {args.seeds}")
    print_comparison(names, "B", args.draws)


if __name__ == "__main__":
    main()
