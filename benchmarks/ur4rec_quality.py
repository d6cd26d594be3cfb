"""UR4Rec's quality: variants x seeds of the four-stage run, with the stage-table figures.

    .venv/bin/python benchmarks/ur4rec_quality.py --variants default --seeds 42,43,44
    .venv/bin/python benchmarks/ur4rec_quality.py --variants default,gate,memory,... --seeds 42

Each run is `ur4rec train --config configs/ur4rec-DATASET.yaml --set ...` in a subprocess
(``--parallel`` at once, ``--threads`` torch threads each). From each run's stages.json:
SASRec alone = the first stage's best, retriever alone = the second's, fused = the last's.
Results are appended to OUT/results.jsonl as runs finish; the table is printed at the end.
Choose variants by the valid columns; the test columns are for reporting.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED_ITEMS = ROOT.parent / "shared" / "seed-llm-texts" / "item_descriptions.json"
# The config's first two stages, as `--set stages=[...]` fragments for the variants below.
PRETRAIN = (
    "{name: pretrain_sasrec, epochs: 200, train: [sasrec], objective: sasrec, patience: 10},"
    " {name: pretrain_retriever, epochs: 200, train: [retriever, memory], objective: retriever,"
    " patience: 10}"
)
PRETRAIN_SASREC = PRETRAIN.split(", {name: pretrain_retriever")[0]
# A fused "stage" that trains nothing (learning rate 0), so that only the calibration runs.
CALIBRATE = "{name: %s, epochs: 1, train: [fusion], lr: {fusion: 0.0}, objective: fused}"
FROZEN_SASREC_STAGES = (
    f"stages=[{PRETRAIN},"
    " {name: joint_finetune, epochs: 30, train: [retriever, memory, fusion], patience: 5,"
    " lr: {retriever: 3.0e-4, memory: 3.0e-4, fusion: 1.0e-3}},"
    " {name: end_to_end, epochs: 30, train: [retriever, memory, fusion, text_encoder], patience: 5,"
    " lr: {retriever: 1.0e-4, memory: 1.0e-4, fusion: 5.0e-4, text_encoder: 1.0e-5}}]"
)
# SASRec and the EASE prior alone: the calibration gives a retriever no stage trained no weight.
PRIOR_ONLY_STAGES = f"stages=[{PRETRAIN_SASREC}, {CALIBRATE % 'calibrate_prior'}]"
# SASRec, the pretrained retriever and the EASE prior, with no joint training: the fusion
# weights are only calibrated on validation. Isolates what the retriever adds to SASRec + prior.
CALIBRATED_RETRIEVER_STAGES = f"stages=[{PRETRAIN}, {CALIBRATE % 'calibrate'}]"
# name -> (config overrides, how many leading stages the variant leaves unchanged). Those
# stages are copied from the base variant's run of the same seed when it exists (BASES; the
# default run otherwise): with the same seed and the same stage configs they would train to the
# same weights, so only the rest is rerun.
NO_PRIOR = "fusion.prior=none"
PRIOR_02 = "fusion.prior_weight=0.2"
VARIANTS: dict[str, tuple[list[str], int]] = {
    "default": ([], 0),
    "no EASE prior": ([NO_PRIOR], 2),
    # For configs without the prior (ml-100k): the same model with it.
    "with EASE prior": (["fusion.prior=ease"], 2),
    "SASRec and EASE prior without the retriever": ([PRIOR_ONLY_STAGES], 1),
    # Does a pretrained retriever add anything to SASRec + prior? (calibration only)
    "pretrained retriever calibrated with the prior": ([CALIBRATED_RETRIEVER_STAGES], 2),
    "LLM item texts pretrained retriever calibrated with the prior": (
        [f"text.item_texts={SHARED_ITEMS}", CALIBRATED_RETRIEVER_STAGES],
        2,
    ),
    "SASRec frozen in the joint stages with the prior": ([FROZEN_SASREC_STAGES], 2),
    "LLM item texts SASRec and EASE prior without the retriever": (
        [f"text.item_texts={SHARED_ITEMS}", PRIOR_ONLY_STAGES],
        1,
    ),
    "content-only pretrained retriever calibrated with the prior": (
        ["retriever.item_ids=false", CALIBRATED_RETRIEVER_STAGES],
        2,
    ),
    "single-expert pretrained retriever calibrated with the prior": (
        ["retriever.experts=1", "retriever.proxies=0", CALIBRATED_RETRIEVER_STAGES],
        2,
    ),
    # The ablation again on the default (EASE prior, stages that keep their start). Methods
    # that are not calibrated get the prior at 0.2, the weight calibration mostly picks.
    "fusion gate with the prior": (["fusion.method=gate", PRIOR_02], 2),
    "fusion fixed 0.4/0.6 (report) with the prior": (
        ["fusion.method=fixed", "fusion.calibrate=false", PRIOR_02],
        2,
    ),
    "fusion curriculum with the prior": (["fusion.method=curriculum", PRIOR_02], 2),
    "fusion uncertainty with the prior": (["fusion.method=uncertainty", PRIOR_02], 2),
    "memory on with the prior": (["memory.enabled=true"], 1),
    "single expert no proxies with the prior": (["retriever.experts=1", "retriever.proxies=0"], 1),
    # The ablation of the report's design, run before the EASE prior became the default: each
    # is the no-prior model with one change.
    "fusion gate": ([NO_PRIOR, "fusion.method=gate"], 2),
    "fusion fixed 0.4/0.6 (report)": (
        [NO_PRIOR, "fusion.method=fixed", "fusion.calibrate=false"],
        2,
    ),
    "fusion fixed calibrated": ([NO_PRIOR, "fusion.method=fixed"], 2),
    "fusion curriculum": ([NO_PRIOR, "fusion.method=curriculum"], 2),
    "fusion uncertainty": ([NO_PRIOR, "fusion.method=uncertainty"], 2),
    "SASRec frozen in the joint stages": ([NO_PRIOR, FROZEN_SASREC_STAGES], 2),
    "memory on": ([NO_PRIOR, "memory.enabled=true"], 1),
    "single expert no proxies": ([NO_PRIOR, "retriever.experts=1", "retriever.proxies=0"], 1),
    "retriever without item ids": ([NO_PRIOR, "retriever.item_ids=false"], 1),
    "user texts as of training (every 10 items)": ([NO_PRIOR, "text.user_text_every=10"], 1),
    "LLM item texts": ([NO_PRIOR, f"text.item_texts={SHARED_ITEMS}"], 0),
    "SASRec without item texts": ([NO_PRIOR, "fusion.sasrec_text_features=false"], 0),
    "LLM item texts and SASRec frozen in the joint stages": (
        [NO_PRIOR, f"text.item_texts={SHARED_ITEMS}", FROZEN_SASREC_STAGES],
        2,
    ),
}
BASES = {
    "LLM item texts and SASRec frozen in the joint stages": "LLM item texts",
    "LLM item texts pretrained retriever calibrated with the prior": "LLM item texts",
    "LLM item texts SASRec and EASE prior without the retriever": "LLM item texts",
    "content-only pretrained retriever calibrated with the prior": "retriever without item ids",
    "single-expert pretrained retriever calibrated with the prior": "single expert no proxies",
}


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


def _command(run_dir: Path, args: list[str], data_dir: str | None) -> list[str]:
    cmd = [sys.executable, "-m", "ur4rec.cli", "train", *args, "--quiet"]
    return cmd + (["--data-dir", data_dir] if data_dir else [])


def _start_from_default(
    run_dir: Path, config: Path, overrides: list[str], base: Path, stages: int, data_dir: str | None
) -> bool:
    """Start a variant's run folder from the first ``stages`` finished stages of the default run.

    The variant's model is initialised exactly as its own run would be; the modules those
    stages train then take the default run's trained weights (every other module is untouched
    by them). Returns False when the default run has not got that far.
    """
    from ur4rec.config import dump_config, load_config
    from ur4rec.data.prepare import open_dataset
    from ur4rec.runs import build
    from ur4rec.runs.checkpoint import load_checkpoint, save_checkpoint

    folders = sorted((base / "stages").glob("*-*"), key=lambda p: int(p.name.split("-")[0]))
    if stages == 0 or len(folders) < stages or not (base / "run.json").is_file():
        return False
    if not all((f / "done.json").is_file() for f in folders[:stages]):
        return False
    cfg = load_config(config, overrides)
    model, _, _ = build(cfg, open_dataset(cfg.data.dataset, root=data_dir), data_dir)
    # Each reused stage's checkpoint is the variant's fresh model with the modules trained up
    # to that stage taken from the base run: the stage table loads every one of them.
    fresh = model.state_dict()
    for index, folder in enumerate(folders[:stages]):
        trained = load_checkpoint(folder / "best.pt")["model"]
        modules = {m for stage in cfg.stages[: index + 1] for m in stage.train}
        state = {k: trained[k] if k.split(".")[0] in modules else v for k, v in fresh.items()}
        target = run_dir / "stages" / folder.name
        target.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / "done.json", target / "done.json")
        save_checkpoint(target / "best.pt", {"model": state})
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    shutil.copyfile(base / "run.json", run_dir / "run.json")
    return True


def run_one(
    name: str, seed: int, dataset: str, out: Path, data_dir: str | None, threads: int
) -> dict:
    run_dir = out / f"{dataset}-{slug(name)}-s{seed}"
    config = ROOT / "configs" / f"ur4rec-{dataset}.yaml"
    overrides, reusable = VARIANTS[name]
    overrides = [f"seed={seed}", *overrides]
    base = out / f"{dataset}-{slug(BASES.get(name, 'default'))}-s{seed}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    reused = 0
    if (run_dir / "summary.json").is_file():
        cmd = None  # finished earlier: read it again
    elif (run_dir / "config.yaml").is_file():
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
              "train_seconds": summary["train_seconds"], "reused_stages": reused}  # fmt: skip
    stages = [s["stage"] for s in summary["stages"]]
    pick = {"sasrec": stages[0], "retriever": stages[1], "fused": stages[-1]}
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
    for protocol in ("full", "seed"):
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
    parser.add_argument("--dataset", default="ml-100k-seed")
    parser.add_argument("--out", default="runs/ur4rec-quality")
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
    results = []
    with ThreadPoolExecutor(max_workers=args.parallel) as pool:
        futures = [
            pool.submit(run_one, n, s, args.dataset, out, args.data_dir, args.threads)
            for n, s in jobs
        ]
        for future in as_completed(futures):
            result = future.result()
            results.append(result)
            with open(out / "results.jsonl", "a") as f:
                f.write(json.dumps(result) + "\n")
    order = {(n, s): i for i, (n, s) in enumerate(jobs)}
    print_table(sorted(results, key=lambda r: order[(r["variant"], r["seed"])]))


if __name__ == "__main__":
    main()
