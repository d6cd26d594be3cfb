"""New items, rare items and short histories: every model on one split, measured by group.

    .venv/bin/python benchmarks/cold_start.py --scheme cold-items --seeds 42,43,44 --llm-texts
    .venv/bin/python benchmarks/cold_start.py --scheme cold-time --seeds 42
    .venv/bin/python benchmarks/cold_start.py --scheme leave-one-out --seeds 42,43,44 \
        --default-ur4rec

Rows: popularity, EASE (whole history and last 3 items, lambda tuned on validation), text-kNN
(template and LLM item descriptions), SASRec (ids only), SASRec over content embeddings
(configs/cold/sasrec-content.yaml), and from the default UR4Rec run the retriever alone (its
retriever stage) and the fused model; with ``--llm-texts`` also content SASRec and UR4Rec on
the LLM item descriptions instead of the template texts, and with ``--default-ur4rec`` the
main job's UR4Rec config (made for warm items) beside the cold one; with ``--logit-adjust
TAU`` also SASRec and the main job's UR4Rec trained with a popularity-adjusted softmax
(``loss.logit_adjust``; with ``--default-ur4rec``), paired with their plain runs. Trained rows are
`ur4rec train` runs in subprocesses (``--parallel`` at once, ``--threads`` each), one per
seed, reused while they are runs of the current code and config (benchmarks/reuse.py); the
fitted rows do not depend on the seed.

Every figure is full ranking on ml-100k-liked. Groups (eval/groups.py): the test target's
training interactions (cold 0, warm >= 1: tail 1-19, head >= 20) and the input history's
length (short <= 10). The paired intervals (eval/compare.py, users resampled, seeds paired)
compare the fused model with the best other row on the cold group (best by validation cold
NDCG@10, never by test) and with SASRec alone on every group. Writes
docs/results/cold-start-SCHEME.json; benchmarks/results_doc.py renders it.
"""

from __future__ import annotations

import argparse
import statistics
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from reuse import (
    command_line,
    plan_run,
    result_provenance,
    run_provenance,
    train_in_subprocess,
    wanted_config,
)
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import make_split
from ur4rec.eval.baselines import build_baseline, describe_baseline
from ur4rec.eval.compare import ndcg_at, paired_difference
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.groups import GROUPS, group_metrics
from ur4rec.io import atomic_write_json
from ur4rec.provenance import text_hash
from ur4rec.runs.layout import load_state_into
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
DATASET = "ml-100k-liked"
LLM_ITEMS = ROOT.parent / "shared" / "seed-llm-texts" / "item_descriptions.json"
TRAINED = {
    "sasrec": ROOT / "configs" / "cold" / "sasrec.yaml",
    "sasrec-content": ROOT / "configs" / "cold" / "sasrec-content.yaml",
    "ur4rec": ROOT / "configs" / "cold" / "ur4rec.yaml",
}
# --llm-texts: the content models again with the LLM item descriptions instead of templates.
LLM_TRAINED = {"sasrec-content-llm": "sasrec-content", "ur4rec-llm": "ur4rec"}
# --default-ur4rec: the main job's UR4Rec config (made for warm items) beside the cold one.
DEFAULT_UR4REC = {"ur4rec-default": ROOT / "configs" / "ur4rec-ml-100k-liked.yaml"}
# --logit-adjust TAU: these runs again with loss.logit_adjust=TAU.
ADJUSTED = {"sasrec-la": "sasrec", "ur4rec-default-la": "ur4rec-default"}
LABELS = {
    "pop": "popularity",
    "ease": "EASE",
    "ease-recent": "EASE, last 3 items",
    "text-knn": "text-kNN (template texts)",
    "text-knn-llm": "text-kNN (LLM descriptions)",
    "sasrec": "SASRec, ids only",
    "sasrec-content": "SASRec over content embeddings",
    "retriever": "UR4Rec's retriever alone",
    "ur4rec": "UR4Rec, fused",
    "sasrec-content-llm": "SASRec over content embeddings (LLM descriptions)",
    "ur4rec-llm": "UR4Rec, fused (LLM descriptions)",
    "ur4rec-default": "UR4Rec, fused (the main job's config)",
    "sasrec-la": "SASRec, ids only, logit-adjusted",
    "ur4rec-default-la": "UR4Rec, fused (the main job's config), logit-adjusted",
}
FUSED = "ur4rec"


def train(
    name: str,
    scheme: str,
    seed: int,
    out: Path,
    threads: int,
    data_dir: str | None,
    tau: float = 0.0,
) -> Path:
    run_dir = out / f"{name}-s{seed}"
    config = {**TRAINED, **DEFAULT_UR4REC}[LLM_TRAINED.get(name, ADJUSTED.get(name, name))]
    overrides = [f"data.scheme={scheme}", f"seed={seed}"]
    if name in LLM_TRAINED:
        overrides.append(f"text.item_texts={LLM_ITEMS}")
    if name in ADJUSTED:
        overrides.append(f"loss.logit_adjust={tau:g}")
    plan = plan_run(run_dir, wanted_config(config, overrides))
    if plan == "reuse":
        return run_dir
    seconds = train_in_subprocess(run_dir, plan, config, overrides, threads, data_dir)
    print(f"trained {run_dir} in {seconds:.0f} s", flush=True)
    return run_dir


def stage_model(run_dir: Path, objective: str, data_dir: str | None) -> Any:
    """The run's model with the weights of its last stage that trained under ``objective``
    (the retriever alone: UR4Rec's retriever stage), scoring as that stage did."""
    cfg, _, model = load_run(run_dir, data_dir)
    index = max(i for i, s in enumerate(cfg.stages) if s.objective == objective)
    folder = Path(run_dir) / "stages" / f"{index + 1}-{cfg.stages[index].name}"
    load_state_into(model, folder / "best.pt")
    model.set_objective(objective)
    return model.eval()


def group_ndcg(ranks: np.ndarray, groups: dict[str, np.ndarray]) -> dict[str, dict[str, float]]:
    """NDCG@10 and Hit@10 of all users and of each group (eval/groups.py)."""
    everyone = {"all": np.ones(len(ranks), dtype=bool)}
    return group_metrics(ranks, {**everyone, **groups}, ks=(10,))


def summarise(per_seed: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean (and sample spread across seeds) of each group's figures."""
    out = {}
    for group, first in per_seed[0].items():
        row: dict[str, float] = {"users": first["users"]}
        for key in ("ndcg@10", "hit@10"):
            values = [s[group][key] for s in per_seed if key in s[group]]
            if values:
                row[key] = statistics.fmean(values)
                row[f"{key} sd"] = statistics.stdev(values) if len(values) > 1 else 0.0
        out[group] = row
    return out


def paired(a: np.ndarray, b: np.ndarray, mask: np.ndarray) -> dict[str, object]:
    diff = paired_difference(ndcg_at(a[:, mask]), ndcg_at(b[:, mask]))
    return {"mean": diff.mean, "users_low": diff.users_low, "users_high": diff.users_high,
            "seeds_low": diff.seeds_low, "seeds_high": diff.seeds_high,
            "seeds_better": diff.seeds_better, "seeds": diff.seeds, "text": str(diff)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scheme", default="cold-items")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, help="run folders (default runs/cold-start/SCHEME)")
    parser.add_argument("--results", type=Path, help="default docs/results/cold-start-SCHEME.json")
    parser.add_argument("--data-dir")
    parser.add_argument(
        "--llm-texts", action="store_true",
        help="also train the content models on the LLM item descriptions",
    )  # fmt: skip
    parser.add_argument(
        "--default-ur4rec", action="store_true",
        help="also train the main job's UR4Rec config (ur4rec-ml-100k-liked.yaml)",
    )  # fmt: skip
    parser.add_argument(
        "--logit-adjust", type=float, default=0.0, metavar="TAU",
        help="also train SASRec and (with --default-ur4rec) the main job's UR4Rec with "
        "loss.logit_adjust=TAU",
    )  # fmt: skip
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    slug = args.scheme.replace(":", "-")
    out = args.out or ROOT / "runs" / "cold-start" / slug
    results = args.results or ROOT / "docs" / "results" / f"cold-start-{slug}.json"
    out.mkdir(parents=True, exist_ok=True)

    trained = [*TRAINED, *(LLM_TRAINED if args.llm_texts else ())]
    trained += [*(DEFAULT_UR4REC if args.default_ur4rec else ())]
    adjusted = [n for n, base in ADJUSTED.items() if args.logit_adjust > 0 and base in trained]
    trained += adjusted
    jobs = [(name, seed) for seed in seeds for name in trained]
    with ThreadPoolExecutor(args.parallel) as pool:
        done = pool.map(
            lambda job: train(
                job[0], args.scheme, job[1], out, args.threads, args.data_dir, args.logit_adjust
            ),
            jobs,
        )
        runs = dict(zip(jobs, done, strict=True))

    dataset = open_dataset(DATASET, root=args.data_dir)
    split = make_split(dataset, args.scheme)
    evaluators = {part: Evaluator(dataset, split, part) for part in ("valid", "test")}
    ranks: dict[str, dict[str, np.ndarray]] = {}  # model -> part -> [seeds, users]
    settings: dict[str, dict] = {}
    fitted = {"pop": {}, "ease": {}, "ease-recent": {}, "text-knn": {},
              "text-knn-llm": {"name": "text-knn", "item_texts": str(LLM_ITEMS)}}  # fmt: skip
    for label, spec in fitted.items():
        if label == "text-knn-llm" and not LLM_ITEMS.is_file():
            continue
        name = spec.get("name", label)
        model = build_baseline(name, dataset, split, root=args.data_dir,
                               item_texts=spec.get("item_texts", "template"))  # fmt: skip
        settings[label] = describe_baseline(model)
        ranks[label] = {p: np.stack([e.ranks(model).numpy()] * len(seeds))
                        for p, e in evaluators.items()}  # fmt: skip
    trained_rows = {"sasrec": ("sasrec", None), "sasrec-content": ("sasrec-content", None),
                    "retriever": ("ur4rec", "retriever"), FUSED: ("ur4rec", None)}  # fmt: skip
    if args.llm_texts:
        trained_rows.update({name: (name, None) for name in LLM_TRAINED})
    if args.default_ur4rec:
        trained_rows.update({name: (name, None) for name in DEFAULT_UR4REC})
    trained_rows.update({name: (name, None) for name in adjusted})
    for label, (name, objective) in trained_rows.items():
        per_part: dict[str, list[np.ndarray]] = {"valid": [], "test": []}
        for seed in seeds:
            run_dir = runs[(name, seed)]
            if objective is None:
                model = load_run(run_dir, args.data_dir)[2]
            else:
                model = stage_model(run_dir, objective, args.data_dir)
            for part, evaluator in evaluators.items():
                per_part[part].append(evaluator.ranks(model).numpy())
        ranks[label] = {p: np.stack(v) for p, v in per_part.items()}

    groups = {p: e.groups for p, e in evaluators.items()}
    rows = []
    for label, by_part in ranks.items():
        test = summarise([group_ndcg(r, groups["test"]) for r in by_part["test"]])
        valid = summarise([group_ndcg(r, groups["valid"]) for r in by_part["valid"]])
        text = LABELS[label] + (f" (tau {args.logit_adjust:g})" if label in ADJUSTED else "")
        rows.append({"model": label, "label": text, "test": test, "valid": valid,
                     **({"settings": settings[label]} if label in settings else {})})  # fmt: skip
    # The fused model's rival on the cold group: the best other row by validation cold NDCG.
    others = [r for r in rows if r["model"] != FUSED and "ndcg@10" in r["valid"]["cold"]]
    comparisons = []
    if others and groups["test"]["cold"].any():
        rival = max(others, key=lambda r: r["valid"]["cold"]["ndcg@10"])["model"]
        comparisons.append({"a": FUSED, "b": rival, "group": "cold", "chosen_by": "valid cold",
                            **paired(ranks[FUSED]["test"], ranks[rival]["test"],
                                     groups["test"]["cold"])})  # fmt: skip
    for a in [FUSED, *(n for n in (*DEFAULT_UR4REC, "ur4rec-default-la") if n in ranks)]:
        for group in ("all", *GROUPS):
            mask = groups["test"].get(group, np.ones(len(evaluators["test"]), dtype=bool))
            if mask.any():
                comparisons.append(
                    {
                        "a": a,
                        "b": "sasrec",
                        "group": group,
                        **paired(ranks[a]["test"], ranks["sasrec"]["test"], mask),
                    }
                )
        for group in ("tail", "cold"):  # where text should win: against the text baseline
            mask = groups["test"][group]
            if mask.any():
                comparisons.append(
                    {
                        "a": a,
                        "b": "text-knn",
                        "group": group,
                        **paired(ranks[a]["test"], ranks["text-knn"]["test"], mask),
                    }
                )
    for a in adjusted:  # what the adjustment costs or gains, group by group
        for group in ("all", *GROUPS):
            mask = groups["test"].get(group, np.ones(len(evaluators["test"]), dtype=bool))
            if mask.any():
                comparisons.append(
                    {
                        "a": a,
                        "b": ADJUSTED[a],
                        "group": group,
                        **paired(ranks[a]["test"], ranks[ADJUSTED[a]]["test"], mask),
                    }
                )
    configs = [(runs[(n, s)] / "config.yaml").read_text() for n, s in jobs]

    document = {
        "scheme": args.scheme, "dataset": DATASET, "protocol": "full", "seeds": seeds,
        "rows": rows, "comparisons": comparisons,
        "runs": {f"{n}-s{s}": run_provenance(runs[(n, s)]) for n, s in jobs},
        "provenance": result_provenance(command_line(__file__),
                                        [text_hash(c) for c in configs],
                                        [dataset.content_hash]),
    }  # fmt: skip
    atomic_write_json(results, document)
    print_table(document)
    print(f"wrote {results}")


def print_table(document: dict) -> None:
    print(f"\n{document['scheme']}, test, full ranking, NDCG@10 (mean of {len(document['seeds'])} "
          "seeds; users per group in the header)")  # fmt: skip
    first = document["rows"][0]["test"]
    columns = ["all", "cold", "warm", "tail", "head", "short", "long"]
    print(f"{'model':34}" + "".join(f"{c + ' (' + str(first[c]['users']) + ')':>14}"
                                    for c in columns))  # fmt: skip
    for row in document["rows"]:
        cells = "".join(f"{row['test'][c].get('ndcg@10', float('nan')):>14.4f}" for c in columns)
        print(f"{row['label']:34}{cells}")
    for c in document["comparisons"]:
        print(f"{c['a']} - {c['b']} on {c['group']}: {c['text']}")


if __name__ == "__main__":
    main()
