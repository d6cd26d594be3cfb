"""UR4Rec's quality: variants x seeds of the four-stage run, with the stage-table figures.

    .venv/bin/python benchmarks/ur4rec_quality.py --variants default --seeds 42,43,44
    .venv/bin/python benchmarks/ur4rec_quality.py --variants default,gate,memory,... --seeds 42

Each run is `ur4rec train --config configs/ur4rec-DATASET.yaml --set ...` in a subprocess, the
variant's settings read from configs/experiments/ur4rec-variants.yaml
(``--parallel`` at once, ``--threads`` torch threads each). From each run's stages.json:
SASRec alone = the first stage's best, retriever alone = the second's, fused = the last's.
A stored run is read again (or resumed) only when it is a run of the current code and the
same config (benchmarks/reuse.py); anything else is set aside and retrained. Results are
appended to OUT/results.jsonl as runs finish and merged into --results (default
docs/results/ur4rec-quality.jsonl, with each run's provenance) at the end; the table is
printed.
Choose variants by the valid columns; the test columns are for reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import yaml

from reuse import command_line, merge_rows, plan_run, run_provenance, wanted_config
from ur4rec.measures import SAMPLED_99

ROOT = Path(__file__).resolve().parent.parent
VARIANTS_FILE = ROOT / "configs" / "experiments" / "ur4rec-variants.yaml"


@dataclass
class Variant:
    overrides: list[str]  # `--set` values on top of configs/ur4rec-DATASET.yaml
    reuse: int  # leading stages left unchanged: copied from `base`'s run of the same seed
    base: str


def read_variants(path: Path = VARIANTS_FILE) -> dict[str, Variant]:
    """The experiment file's variants as `--set` overrides (stage lists resolved)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    shared = str(ROOT.parent / "shared")
    variants = {}
    for name, spec in data["variants"].items():
        overrides = []
        for key, value in (spec.get("set") or {}).items():
            if isinstance(value, str):
                overrides.append(f"{key}={value.replace('{shared}', shared)}")
            else:
                overrides.append(f"{key}={json.dumps(value)}")
        if "stages" in spec:
            overrides.append("stages=" + json.dumps(data["stage_lists"][spec["stages"]]))
        variants[name] = Variant(overrides, spec.get("reuse", 0), spec.get("base", "default"))
    return variants


VARIANTS = read_variants()


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _command(run_dir: Path, args: list[str], data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "ur4rec.cli", "train", *args, "--quiet"]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _start_from_default(
    run_dir: Path, config: Path, overrides: list[str], base: Path, stages: int, data_dir: str | None
) -> bool:
    """Start a variant's run folder from the first ``stages`` finished stages of the default
    run (train/reuse.py); False when the default run has not got that far."""
    from ur4rec.config import load_config
    from ur4rec.data.prepare import open_dataset
    from ur4rec.train.reuse import start_from_stages

    if stages == 0 or not (base / "run.json").is_file():
        return False
    cfg = load_config(config, overrides)
    dataset = open_dataset(cfg.data.dataset, root=data_dir)
    return start_from_stages(run_dir, cfg, base, stages, dataset, data_dir)


def run_one(
    name: str,
    seed: int,
    dataset: str,
    out: Path,
    data_dir: str | None,
    threads: int,
    command: str = "",
) -> dict:
    run_dir = out / f"{dataset}-{slug(name)}-s{seed}"
    config = ROOT / "configs" / f"ur4rec-{dataset}.yaml"
    variant = VARIANTS[name]
    overrides, reusable = [f"seed={seed}", *variant.overrides], variant.reuse
    base = out / f"{dataset}-{slug(variant.base)}-s{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    reused = 0
    plan = plan_run(run_dir, wanted_config(config, overrides))
    if plan == "reuse":
        cmd = None  # a finished run of this code and config: read it again
    elif plan == "resume":
        cmd = _command(run_dir, ["--resume", str(run_dir)], data_dir)
    elif name != "default" and _start_from_default(
        run_dir, config, overrides, base, reusable, data_dir
    ):
        reused = reusable
        cmd = _command(run_dir, ["--resume", str(run_dir)], data_dir)
    else:
        sets = [x for o in overrides for x in ("--set", o)]
        cmd = _command(run_dir, ["--config", str(config), "--out", str(run_dir), *sets], data_dir)
    if cmd is not None:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            return {"variant": name, "seed": seed, "error": proc.stderr[-2000:]}
    seconds = time.perf_counter() - start
    table = json.loads((run_dir / "stages.json").read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    result = {"variant": name, "seed": seed, "dataset": dataset, "seconds": round(seconds, 1),
              "train_seconds": summary["train_seconds"], "reused_stages": reused,
              "command": command, "provenance": run_provenance(run_dir)}  # fmt: skip
    # SASRec alone and the retriever alone: the stages that train them on their own objective
    # (a variant without a retriever stage has no retriever row); fused: the last stage.
    pick = {s["objective"]: s["stage"] for s in reversed(summary["stages"])
            if s["objective"] in ("sasrec", "retriever")}  # fmt: skip
    pick["fused"] = summary["stages"][-1]["stage"]
    for row in table:
        for model, stage in pick.items():
            if row["stage"] == stage:
                for key in ("valid hit@10", "valid ndcg@10", "test hit@10", "test ndcg@10"):
                    result[f"{model} {row['protocol']} {key}"] = row[key]
    weights = [s.get("sasrec_weight") for s in summary["stages"] if "sasrec_weight" in s]
    if weights:
        result["sasrec_weight"] = weights[-1]
    priors = [s["prior_weight"] for s in summary["stages"] if "prior_weight" in s]
    if priors:
        result["prior_weight"] = priors[-1]
    return result


def mean_spread(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.4f}"
    return f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def print_table(results: list[dict]) -> None:
    ok = [r for r in results if "error" not in r]
    for r in results:
        if "error" in r:
            print(f"FAILED {r['variant']} seed {r['seed']}:\n{r['error']}")
    for protocol in ("full", SAMPLED_99):
        print(f"\nprotocol {protocol} (mean ± sd over seeds):")
        header = [
            "variant",
            "model",
            "valid hit@10",
            "valid ndcg@10",
            "test hit@10",
            "test ndcg@10",
        ]
        print(" | ".join(header))
        for variant in dict.fromkeys(r["variant"] for r in ok):
            runs = [r for r in ok if r["variant"] == variant]
            for model in ("sasrec", "retriever", "fused"):
                if any(f"{model} {protocol} test ndcg@10" not in r for r in runs):
                    continue
                cells = [variant, model]
                for key in header[2:]:
                    cells.append(mean_spread([r[f"{model} {protocol} {key}"] for r in runs]))
                print(" | ".join(cells))
    for r in ok:
        weight = r.get("sasrec_weight", "-")
        prior = f", prior weight {r['prior_weight']}" if "prior_weight" in r else ""
        print(
            f"{r['variant']} seed {r['seed']}: {r['seconds']:.0f}s wall, "
            f"{r['train_seconds']:.0f}s training, SASRec weight {weight}{prior}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--variants", default="default", help=f"comma list of: {', '.join(VARIANTS)}"
    )
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--out", default="runs/ur4rec-quality")
    parser.add_argument(
        "--results", default=str(ROOT / "docs" / "results" / "ur4rec-quality.jsonl")
    )
    parser.add_argument("--data-dir")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    names = (
        [v.strip() for v in args.variants.split(",")] if args.variants != "all" else list(VARIANTS)
    )
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant {unknown[0]!r}; known: {', '.join(VARIANTS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(n, int(s)) for n in names for s in args.seeds.split(",")]
    command = command_line(__file__)
    # A variant that reuses stages needs its base's run first: bases go in the first round.
    bases = {VARIANTS[n].base for n in names if VARIANTS[n].reuse}
    rounds = [[j for j in jobs if j[0] in bases], [j for j in jobs if j[0] not in bases]]
    results = []
    for round_jobs in rounds:
        results += _run_round(round_jobs, args, out, command)
    order = {(n, s): i for i, (n, s) in enumerate(jobs)}
    ok = [r for r in results if "error" not in r]
    merge_rows(Path(args.results), ok, ("dataset", "variant", "seed"))
    print_table(sorted(results, key=lambda r: order[(r["variant"], r["seed"])]))
    print(f"wrote {args.results}")


def _run_round(
    jobs: list[tuple[str, int]], args: argparse.Namespace, out: Path, command: str
) -> list[dict]:
    results = []
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [
            pool.submit(run_one, n, s, args.dataset, out, args.data_dir, args.threads, command)
            for n, s in jobs
        ]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
    return results


if __name__ == "__main__":
    main()
