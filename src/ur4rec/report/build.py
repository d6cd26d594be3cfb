"""`ur4rec report RUN`: a training report (REPORT.md and PNG plots) written into the run folder.

Everything in it is read from the run's own files or measured again from its checkpoint:
configuration, data statistics, the stage table, validation and loss curves, test metrics under
the full and sampled protocols next to popularity and EASE on the same split, the ablation
table when the quality benchmark left one beside the run, and the leakage audit of the user
texts the model read.
"""

from __future__ import annotations

import io
import json
import statistics
import time
from pathlib import Path
from typing import Any

from ur4rec.data.dataset import canonical_dataset
from ur4rec.data.splits import make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.baselines import BASELINES, build_baseline, describe_baseline
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.groups import FEW_USERS
from ur4rec.io import atomic_write_bytes, atomic_write_text
from ur4rec.measures import SAMPLED_99, canonical_protocol, parse_scheme
from ur4rec.report_table import format_table
from ur4rec.runs.layout import has_refit, read_log
from ur4rec.runs.load import load_run
from ur4rec.train.stages import format_stage_table
from ur4rec.version import __version__

PROTOCOLS = ("full", SAMPLED_99)
METRICS = ("hit@10", "ndcg@10", "mrr@10")
# What each split scheme holds out, in the report's words (data/splits.py).
SPLIT_WORDS = {
    "leave-one-out": "each user's last item is the test target, the one before it the "
    "validation target, everything earlier is training data",
    "ratio": "the first 80% of each history is training data, the next item the validation "
    "target, the first item after 90% the test target",
    "cold-items": "each user's last item is the test target, the one before it the validation "
    "target, everything earlier is training data except every interaction with a held-out "
    "share of new items",
    "cold-time": "training data is every interaction before a global time cut; users active "
    "after it are tested on their last item and validated on the one before",
    "rehearsal": "each user's last item is left out; the one before it is the test target (the "
    "leave-one-out validation target), the one before that the validation target, everything "
    "earlier is training data",
}


def _md(rows: list[dict[str, Any]], columns: list[str]) -> str:
    return format_table(rows, columns, markdown=True)


def stage_logs(run_dir: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(stage name, epoch rows) in order; a SASRec run is one stage called 'train'."""
    stages = sorted(
        (p for p in (run_dir / "stages").glob("*-*") if p.is_dir()),
        key=lambda p: int(p.name.split("-")[0]),
    )
    if stages:
        return [(p.name.split("-", 1)[1], read_log(p / "log.jsonl")) for p in stages]
    return [("train", read_log(run_dir / "log.jsonl"))]


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _save_png(fig: Any, path: Path) -> None:
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    atomic_write_bytes(path, buffer.getvalue())


def plot_curves(logs: list[tuple[str, list[dict[str, Any]]]], metric: str, path: Path) -> bool:
    """Validation metric and training loss per epoch, stage after stage; False if no rows."""
    if not any(rows for _, rows in logs):
        return False
    fig, (top, bottom) = _pyplot().subplots(2, 1, figsize=(8, 6), sharex=True)
    offset = 0
    for name, rows in logs:
        epochs = [offset + r["epoch"] for r in rows]
        valid = [
            (offset + r["epoch"], r[f"valid/{metric}"]) for r in rows if f"valid/{metric}" in r
        ]
        if valid:
            top.plot(*zip(*valid, strict=True), marker=".", label=name)
        bottom.plot(epochs, [r["loss"] for r in rows], marker=".", label=name)
        offset += len(rows)
        if len(logs) > 1:
            for axis in (top, bottom):
                axis.axvline(offset + 0.5, color="grey", linewidth=0.5, linestyle="--")
    top.set_ylabel(f"validation {metric}")
    bottom.set_ylabel("training loss")
    bottom.set_xlabel("epoch (stages one after another)")
    top.legend(fontsize=8)
    top.set_title("Validation metric and training loss per epoch")
    _save_png(fig, path)
    return True


def plot_stage_table(table: list[dict[str, Any]], path: Path) -> bool:
    rows = [r for r in table if r["protocol"] == "full"]
    if len(rows) < 2:
        return False
    fig, axis = _pyplot().subplots(figsize=(8, 3.5))
    names = [r["stage"] for r in rows]
    for key in ("valid ndcg@10", "test ndcg@10", "valid hit@10", "test hit@10"):
        axis.plot(names, [r[key] for r in rows], marker="o", label=key)
    axis.set_title("Best checkpoint of each stage (full ranking)")
    axis.legend(fontsize=8)
    _save_png(fig, path)
    return True


def _current_names(key: str) -> str:
    """'fused seed test ndcg@10' -> 'fused sampled-with-history:99 test ndcg@10'."""
    words = key.split(" ")
    if len(words) == 4:
        words[1] = canonical_protocol(words[1])
    return " ".join(words)


def ablation_rows(path: Path, dataset: str) -> list[dict[str, Any]]:
    """Mean over seeds per variant from the quality benchmark's results.jsonl."""
    results = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if "error" in row or canonical_dataset(str(row.get("dataset"))) != dataset:
            continue
        # Rows written under a protocol's earlier name count under its current one.
        results.append({_current_names(k): v for k, v in row.items()})
    latest: dict[tuple[str, int], dict[str, Any]] = {}
    for row in results:  # a rerun of the same variant and seed replaces the earlier row
        latest[(row["variant"], row["seed"])] = row
    out = []
    for variant in dict.fromkeys(v for v, _ in latest):
        runs = [r for (v, _), r in latest.items() if v == variant]
        entry: dict[str, Any] = {"variant": variant, "seeds": len(runs)}
        for model in ("sasrec", "retriever", "fused"):
            for protocol in PROTOCOLS:
                key = f"{model} {protocol} test ndcg@10"
                values = [r[key] for r in runs if key in r]
                if values:
                    entry[f"{model} {protocol}"] = statistics.mean(values)
        out.append(entry)
    return out


def write_report(run_dir: Path, data_dir: str | None = None, ablation: Path | None = None) -> Path:
    """Write RUN/REPORT.md and its plots; returns the report's path."""
    run_dir = Path(run_dir)
    if not (run_dir / "summary.json").is_file():
        raise Ur4recError(f"{run_dir} has no finished run (summary.json); train or resume it first")
    cfg, dataset, model = load_run(run_dir, data_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    split = make_split(dataset, cfg.data.scheme)
    metric = cfg.train.metric
    parts: list[str] = []
    title = f"Training report: {cfg.model.name} on {dataset.name}"
    parts.append(
        f"# {title}\n\nRun `{run_dir}`, written {time.strftime('%Y-%m-%d %H:%M')} by ur4rec "
        f"{__version__} (`ur4rec report {run_dir}`). Every figure below is read from the run's "
        "files or measured again from its final model (the refit one where the run has one, "
        "otherwise its best checkpoint); none is copied from elsewhere."
    )

    parts.append("## What was trained\n\n" + _describe(cfg, dataset.name, model))

    # -- results next to baselines ---------------------------------------------------------
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    refitted = has_refit(run_dir)  # then the baselines are fitted on the same longer part
    baselines = {
        name: build_baseline(name, dataset, split, root=data_dir, refit=refitted)
        for name in BASELINES
    }
    by_group: list[dict[str, Any]] = []
    group_users: dict[str, int] = {}
    legend = ""
    for protocol in PROTOCOLS:
        try:
            evaluator = Evaluator(dataset, split, "test", protocol)
        except Ur4recError as exc:  # e.g. the 1+99 protocol needs 99 negatives per user
            skipped.append(f"protocol `{protocol}` not measured: {exc}")
            continue
        scorers = {f"this run ({cfg.model.name})": model}
        for name, baseline in baselines.items():
            scorers[_baseline_label(name, describe_baseline(baseline))] = baseline
        for label, scorer in scorers.items():
            result = evaluator.evaluate(scorer)
            rows.append({"model": label, "protocol": protocol, **_pick(result)})
            if protocol == "full":
                groups = result["groups"]
                group_users = {g: v["users"] for g, v in groups.items()}
                legend = str(result["group_legend"])
                by_group.append({"model": label, **{
                    f"{g} ({v['users']})": v.get("ndcg@10") for g, v in groups.items()
                }})  # fmt: skip
    popular = [r for r in rows if r["model"] == "pop" and r["protocol"] == SAMPLED_99]
    fitted = (
        "the baselines, which are fitted on the same training split (EASE's lambda and "
        "RP3beta's alpha and beta chosen on the validation part)"
        + (
            "; this run is refit (`ur4rec refit`), so the figures are its refit model's and "
            "the baselines too are fitted on the training part plus the validation targets"
            if refitted
            else ""
        )
    )
    popularity = (
        f"Item popularity alone scores {popular[0]['hit@10']:.4f} Hit@10 there, so read it "
        f"next to {fitted}."
        if popular
        else f"Read it next to {fitted}."
    )
    parts.append(
        "## Results on the test split\n\n"
        "`full`: every item is ranked, the user's earlier items masked. "
        f"`{SAMPLED_99}` (formerly `seed`): the protocol of the report this project started "
        "from: the target against 99 items drawn uniformly from the rest of the catalogue, the "
        f"user's history included, once, with a fixed seed. {popularity}\n\n"
        + _md(rows, ["model", "protocol", *METRICS])
        + "".join(f"\n\n{line}." for line in skipped)
    )
    if by_group:
        few = [g for g, n in group_users.items() if 0 < n < FEW_USERS]
        parts.append(
            "## By group (test, full ranking, NDCG@10)\n\n"
            f"Users grouped by the case ({legend}); the count of users is in each header."
            + (
                f" Fewer than {FEW_USERS} users in {', '.join(few)}: read those as noise."
                if few
                else ""
            )
            + "\n\n"
            + _md(by_group, list(by_group[0]))
        )

    # -- stage table --------------------------------------------------------------------------
    stages_path = run_dir / "stages.json"
    plots = []
    if stages_path.is_file():
        table = json.loads(stages_path.read_text(encoding="utf-8"))
        weights = [s.get("sasrec_weight") for s in summary.get("stages", [])]
        priors = [s["prior_weight"] for s in summary.get("stages", []) if "prior_weight" in s]
        note = ""
        if any(w is not None for w in weights):
            note = (
                "\n\nFusion weight of SASRec after each fused stage (chosen on validation): "
                + ", ".join(f"{w:.2f}" for w in weights if w is not None)
                + "."
            )
        if priors:
            note += " Weight of the EASE prior: " + ", ".join(f"{w:.2f}" for w in priors) + "."
        cooc = [s for s in summary.get("stages", []) if "cooccurrence_weight" in s]
        if cooc:
            note += (
                " Weights of the co-occurrence branch (every item / rare items / rare bonus): "
                + ", ".join(
                    f"{s['cooccurrence_weight']:.2f} / {s['rare_weight']:.2f} / "
                    f"{s['rare_bonus']:.2f}"
                    for s in cooc
                )
                + "."
            )
        parts.append(
            "## Stages\n\nEach stage starts from the best checkpoint of the one before; the "
            "figures are that stage's best checkpoint, with the change against the previous "
            "stage. A stage marked *(start kept)* had no epoch better than its start on "
            "validation and handed its start on.\n\n"
            + format_stage_table(table, markdown=True)
            + note
        )
        if plot_stage_table(table, run_dir / "stages.png"):
            plots.append(("stages.png", "Validation and test NDCG@10 / Hit@10 per stage"))
    else:
        parts.append(
            "## Training\n\n"
            + _md(
                [
                    {
                        "best epoch": summary.get("best_epoch"),
                        "epochs run": summary.get("epochs_run"),
                        "stopped early": summary.get("stopped_early"),
                        "training seconds": summary.get("train_seconds"),
                        **{f"valid {k}": v for k, v in _pick(summary["valid"]).items()},
                    }
                ],
                [
                    "best epoch",
                    "epochs run",
                    "stopped early",
                    "training seconds",
                    *(f"valid {m}" for m in METRICS),
                ],
            )
        )

    # -- curves -------------------------------------------------------------------------------
    logs = stage_logs(run_dir)
    if plot_curves(logs, metric, run_dir / "curves.png"):
        plots.insert(0, ("curves.png", f"Validation {metric} and training loss per epoch"))
    if plots:
        calibrated = any("sasrec_weight" in row for row in summary.get("stages", []))
        note = ""
        if calibrated:
            note = (
                "The fused stages' curves show the fusion weight as trained; each stage's best "
                "checkpoint then has its weight chosen on validation, which is what the stage "
                "table reports.\n\n"
            )
        parts.append(
            "## Curves\n\n"
            + note
            + "\n\n".join(f"![{caption}]({name})\n\n*{caption}.*" for name, caption in plots)
        )

    # -- ablation -----------------------------------------------------------------------------
    ablation = ablation or (run_dir.parent / "results.jsonl")
    if ablation.is_file():
        table_rows = ablation_rows(ablation, dataset.name)
        if table_rows:
            columns = ["variant", "seeds"] + [
                f"{m} {p}" for m in ("sasrec", "retriever", "fused") for p in PROTOCOLS
            ]
            parts.append(
                f"## Ablation\n\nTest NDCG@10, mean over seeds, from `{ablation}` "
                "(written by `benchmarks/ur4rec_quality.py`). SASRec alone is each run's first "
                "stage, the retriever alone its second, fused its last.\n\n"
                + _md(table_rows, [c for c in columns if any(c in r for r in table_rows)])
            )

    # -- data ---------------------------------------------------------------------------------
    lengths = dataset.lengths
    density = dataset.n_interactions / (dataset.n_users * dataset.n_items)
    median = int(statistics.median(lengths.tolist()))
    data_rows = [
        {"what": "users", "value": dataset.n_users},
        {"what": "items", "value": dataset.n_items},
        {"what": "interactions", "value": dataset.n_interactions},
        {"what": "density", "value": f"{density:.2%}"},
        {"what": "history length (min / median / max)",
         "value": f"{int(lengths.min())} / {median} / {int(lengths.max())}"},
        {"what": "training interactions", "value": int(split.train.lengths.sum())},
        {"what": "validation / test users",
         "value": f"{len(split.valid.users)} / {len(split.test.users)}"},
        {"what": "split", "value": cfg.data.scheme},
        {"what": "data content hash", "value": dataset.content_hash[:16]},
    ]  # fmt: skip
    parts.append("## Data\n\n" + _md(data_rows, ["what", "value"]))

    # -- texts --------------------------------------------------------------------------------
    parts.append("## Texts and leakage audit\n\n" + _audit_section(cfg, dataset, model))

    # -- configuration ------------------------------------------------------------------------
    config_text = (run_dir / "config.yaml").read_text(encoding="utf-8")
    parts.append(f"## Configuration\n\n```yaml\n{config_text.rstrip()}\n```")

    report = run_dir / "REPORT.md"
    atomic_write_text(report, "\n\n".join(parts) + "\n")
    return report


def _describe(cfg: Any, dataset: str, model: Any) -> str:
    lines = [f"The model is {model.describe_config(cfg)}"]
    if cfg.stages:
        lines.append(
            "\nIt was trained in stages, each starting from the best checkpoint of the last:\n"
        )
        # Modules that do not exist in this run (e.g. memory off) are not named.
        absent = {name for name, params in model.parameter_groups().items() if not params}
        for i, stage in enumerate(cfg.stages, 1):
            modules = ", ".join(m for m in stage.train if m not in absent)
            lines.append(
                f"{i}. `{stage.name}`: trains {modules} on the "
                f"`{stage.objective or model.objectives[0]}` "
                f"objective, at most {stage.epochs} epochs, early stopping on validation "
                f"{stage.metric}."
            )
    split = SPLIT_WORDS[parse_scheme(cfg.data.scheme)[0]]
    lines.append(
        f"\nData: `{dataset}`, split `{cfg.data.scheme}`: {split}. "
        "Hit@10 is the share of users whose held-out item is among the top 10; NDCG@10 also "
        "rewards a higher position (1 at the top, 1/log2(rank + 1) below); MRR@10 is the mean "
        "reciprocal rank within the top 10."
    )
    return "\n".join(lines)


def _baseline_label(name: str, settings: dict[str, Any]) -> str:
    """A baseline's row name with the settings validation chose for it."""
    if "lambda" in settings:
        return f"{name} (lambda {settings['lambda']:g})"
    if "alpha" in settings:
        return f"{name} (alpha {settings['alpha']:g}, beta {settings['beta']:g})"
    return name


def _pick(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in METRICS if k in metrics}


def _audit_section(cfg: Any, dataset: Any, model: Any) -> str:
    from ur4rec.text.audit import audit_texts

    known = model.known_user_texts()
    if known is None:
        return "This model reads no texts: nothing to audit."
    source = cfg.text.user_texts
    texts = dict(zip(dataset.user_ids, known, strict=True))
    result = audit_texts(dataset, texts, cfg.data.scheme)
    verdict = (
        "**LEAKAGE**: the user texts name held-out items far more often than chance"
        if result.leaked
        else "no leakage found"
    )
    rows = [
        {"check": "texts naming the user's test item", "share": f"{result.test_share:.1%}"},
        {"check": "texts naming the user's validation item", "share": f"{result.valid_share:.1%}"},
        {"check": "control: random unrated items", "share": f"{result.control_share:.1%}"},
    ]
    return (
        f"Item texts: `{cfg.text.item_texts}`. User texts: `{source}` "
        "(template texts are written from the training part of each history only). "
        f"Encoder: `{cfg.text.encoder}`.\n\n"
        f"Audit of the {result.users} user texts the model read: {verdict}.\n\n"
        + _md(rows, ["check", "share"])
    )
