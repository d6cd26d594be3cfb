"""Two sets of runs, matched by seed, compared per user: is A really better than B?

    .venv/bin/python benchmarks/compare_runs.py \\
        --a "runs/ur4rec-quality/ml-100k-liked-default-s{seed}" \\
        --b "runs/text-in-sasrec/SASRec_alone-s{seed}" --seeds 42-44

For valid and test under the full and seed protocols: NDCG@10 and Hit@10 of A and B (mean ±
sd over seeds), and A - B in NDCG@10 with a 95% interval from resampling users and one across
seeds (eval/compare.py). Ranks are computed once per run and kept in its ranks.npz, reused
only while the code and the checkpoint are the same; a run of other code is set aside and
trained again from its own config (benchmarks/reuse.py). The runs must share the dataset and
split; --a and --b are paths with {seed} in them. ``--groups`` repeats every comparison per
group of users (eval/groups.py: the target's training interactions, the history's length).
With --results the comparison (and every
run's provenance) is merged into that file for docs/results.md.
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from reuse import cached_ranks, command_line, merge_rows, plan_run, run_provenance
from ur4rec.config import load_config
from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.measures import SAMPLED_99
from ur4rec.train import run

CASES = [(part, protocol) for part in ("valid", "test") for protocol in ("full", SAMPLED_99)]


def parse_seeds(text: str) -> list[int]:
    """'42-44,50' -> [42, 43, 44, 50]."""
    seeds: list[int] = []
    for part in text.split(","):
        low, _, high = part.partition("-")
        seeds += list(range(int(low), int(high or low) + 1))
    return seeds


def current_run(run_dir: Path, data_dir: str | None = None) -> Path:
    """The run itself when it is a finished run of the current code; otherwise it is set
    aside and trained again from its own config (benchmarks/reuse.py)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise SystemExit(f"{run_dir} is not a run folder")
    config = (run_dir / "config.yaml").read_text(encoding="utf-8")
    plan = plan_run(run_dir, config)
    if plan == "resume":
        run.resume(run_dir, data_dir=data_dir, quiet=True)
    elif plan == "train":  # set aside as RUN.stale: its config is there
        stale = run_dir.with_name(run_dir.name + ".stale")
        run.train(load_config(stale / "config.yaml"), run_dir, data_dir=data_dir, quiet=True)
    return run_dir


def ranks_of(run_dir: Path, data_dir: str | None = None) -> dict[str, np.ndarray]:
    """A current run's per-user ranks for CASES (kept in its ranks.npz)."""
    return cached_ranks(current_run(run_dir, data_dir), CASES, data_dir)


def mean_sd(values: list[float]) -> str:
    if len(values) < 2:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def group_masks(run_dir: Path, data_dir: str | None = None) -> dict[str, dict[str, np.ndarray]]:
    """part -> group -> users mask (eval/groups.py, default thresholds) for a run's split, in
    the order of its ranks; "all" is everyone."""
    from ur4rec.data.prepare import open_dataset
    from ur4rec.data.splits import make_split
    from ur4rec.eval.evaluator import Evaluator

    cfg = load_config(Path(run_dir) / "config.yaml")
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    split = make_split(dataset, cfg.data.scheme)
    out = {}
    for part in ("valid", "test"):
        evaluator = Evaluator(dataset, split, part)
        out[part] = {"all": np.ones(len(evaluator), dtype=bool), **evaluator.groups}
    return out


def print_comparison(
    names: dict[str, list[dict[str, np.ndarray]]],
    baseline: str,
    draws: int = 2000,
    groups: dict[str, dict[str, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:
    """``names``: label -> per-seed ranks (same seeds, same order); each label other than
    ``baseline`` is compared with it, on every user and, with ``groups`` (``group_masks``), on
    each group of users. Returns one row per case, group and compared label."""
    rows = []
    for part, protocol in CASES:
        key = f"{part} {protocol}"
        masks = groups[part] if groups else {"all": None}
        for group, mask in masks.items():
            if mask is not None and not mask.any():
                continue
            users = "" if mask is None else f", {group} ({int(mask.sum())} users)"
            print(f"\n{key}{users}")
            width = max(len(n) for n in names)
            means = {}
            for name, runs in names.items():
                picked = [r[key] if mask is None else r[key][mask] for r in runs]
                ndcg = [float(ndcg_at(r).mean()) for r in picked]
                hit = [float((r < 10).mean()) for r in picked]
                means[name] = ndcg
                print(f"  {name:<{width}}  NDCG@10 {mean_sd(ndcg)}  Hit@10 {mean_sd(hit)}")

            def per_user(
                runs: list[dict[str, np.ndarray]], key: str = key, mask: Any = mask
            ) -> np.ndarray:
                return np.stack([ndcg_at(r[key] if mask is None else r[key][mask]) for r in runs])

            base = per_user(names[baseline])
            for name, runs in names.items():
                if name != baseline:
                    diff = paired_difference(per_user(runs), base, draws)
                    print(f"  {name} - {baseline}: {diff}")
                    rows.append({"a": name, "b": baseline, "split": part, "protocol": protocol,
                                 "group": group, "a ndcg@10": mean_sd(means[name]),
                                 "b ndcg@10": mean_sd(means[baseline]),
                                 "difference": asdict(diff)})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", required=True, help="run path with {seed}")
    parser.add_argument("--b", required=True, help="run path with {seed}")
    parser.add_argument("--seeds", default="42-44")
    parser.add_argument("--data-dir")
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--label-a", help="A's name in the output (default: --a)")
    parser.add_argument("--label-b", help="B's name in the output (default: --b)")
    parser.add_argument(
        "--results", help="merge the comparison into this JSON-lines file (docs/results/...)"
    )
    parser.add_argument(
        "--groups", action="store_true",
        help="also compare per group of users (cold/warm/tail/head/short/long, eval/groups.py)",
    )  # fmt: skip
    args = parser.parse_args()
    if "{seed}" not in args.a or "{seed}" not in args.b:
        parser.error("--a and --b must contain {seed}")
    seeds = parse_seeds(args.seeds)
    label_a, label_b = args.label_a or args.a, args.label_b or args.b
    names = {
        label_a: [ranks_of(Path(args.a.format(seed=s)), args.data_dir) for s in seeds],
        label_b: [ranks_of(Path(args.b.format(seed=s)), args.data_dir) for s in seeds],
    }
    print(f"A = {args.a}\nB = {args.b}\nseeds {args.seeds}")
    groups = group_masks(Path(args.a.format(seed=seeds[0])), args.data_dir) if args.groups else None
    rows = print_comparison(names, label_b, args.draws, groups)
    if args.results:
        command = command_line(__file__)
        origins = [run_provenance(Path(p.format(seed=s))) for p in (args.a, args.b) for s in seeds]
        for row in rows:
            row.update(seeds=args.seeds, command=command, run_provenance=origins)
        for row in rows:
            row.setdefault("group", "all")
        merge_rows(
            Path(args.results),
            rows,
            ("a", "b", "seeds", "split", "protocol", "group"),
            defaults={"group": "all"},  # rows from before groups compared all users
        )
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
