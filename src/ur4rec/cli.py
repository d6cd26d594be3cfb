"""The ``ur4rec`` command line."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ur4rec.data.dataset import DATASET_ALIASES, DATASETS
from ur4rec.data.prepare import open_dataset, prepare_dataset, prepared_folder
from ur4rec.data.splits import SCHEMES, make_split, parse_scheme
from ur4rec.errors import Ur4recError
from ur4rec.eval.baselines import (
    BASELINES,
    EASE_L2_GRID,
    EASE_RECENT,
    RP3_ALPHA_GRID,
    RP3_BETA_GRID,
    baseline_table,
    build_baseline,
    describe_baseline,
)
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.groups import FEW_USERS, GroupSpec
from ur4rec.eval.metrics import DEFAULT_KS
from ur4rec.measures import PROTOCOL_NAMES, SAMPLED_99
from ur4rec.report_table import format_table
from ur4rec.runs.layout import CHECKPOINTS

METRIC_COLUMNS = ("hit@10", "ndcg@10", "mrr@10")

CHECKPOINT_HELP = (
    "final (default): the refit model where the run has one (`ur4rec refit`), on validation "
    "and otherwise the best checkpoint; best, last, or refit"
)
DATASET_NAMES = [*DATASETS, *DATASET_ALIASES]  # earlier names still work
DATASET_HELP = f"a preset ({', '.join(DATASETS)}) or a name given to `ur4rec data import`"


def _parse_ks(text: str) -> tuple[int, ...]:
    try:
        ks = tuple(int(k) for k in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--ks must be integers like 5,10,20, got {text!r}"
        ) from None
    if not ks or min(ks) < 1:
        raise argparse.ArgumentTypeError(f"--ks must be positive, got {text!r}")
    return ks


def _scheme(text: str) -> str:
    try:
        parse_scheme(text)
    except Ur4recError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def _group_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tail-below", type=int, default=GroupSpec.tail_below, metavar="N",
        help="targets with fewer training interactions are tail (0: cold); default %(default)s",
    )  # fmt: skip
    parser.add_argument(
        "--short-max", type=int, default=GroupSpec.short_max, metavar="N",
        help="histories of at most N items are short; default %(default)s",
    )  # fmt: skip


def _group_spec(args: argparse.Namespace) -> GroupSpec:
    try:
        return GroupSpec(args.tail_below, args.short_max)
    except ValueError as exc:
        raise Ur4recError(str(exc)) from None


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data folder (default: $UR4REC_DATA or the user cache)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _print(obj: object, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2) if as_json else text)


_SEEN = {
    "last": ", the user's own items ranked last",
    "scored": ", the user's own items as scored",
}


def _seen_items_arg(parser: argparse.ArgumentParser, default: str) -> None:
    parser.add_argument(
        "--seen-items",
        choices=("auto", "last", "keep"),
        default=None if default != "auto" else "auto",
        help="under sampled-with-history: rank the user's own items last (last), as scored "
        "(keep), or last unless the training data repeats items (auto); default: " + default,
    )


def _print_metrics(result: dict[str, object], as_json: bool) -> None:
    """One evaluation result: what was measured, then a table of its @K metrics (or JSON)."""
    run = f" ({result['run']})" if "run" in result else ""
    if "lambda" in result and result["lambda"] is not None:
        window = f"last {result['recent']} items" if result["recent"] else "whole history"
        run = f" (lambda {result['lambda']:g} from {result['lambda_from']}, {window})"
    title = (
        f"{result['model']}{run} on {result['dataset']} ({result['scheme']}, {result['split']}, "
        f"protocol {result['protocol']}, {result['users']} users"
        f"{_SEEN.get(str(result.get('seen_items')), '')})"
    )
    columns = [c for c in result if "@" in c]
    text = title + "\n" + format_table([result], columns)
    groups = result.get("groups")
    if isinstance(groups, dict):
        text += f"\n\nby group ({result['group_legend']}; * fewer than {FEW_USERS} users)\n"
        shown = [c for c in columns if c.endswith("@10")]
        rows = [
            {"group": f"{name}{'*' if 0 < g['users'] < FEW_USERS else ''}", **g}
            for name, g in groups.items()
        ]
        text += format_table(rows, ["group", "users", *shown])
    _print(result, as_json, text)


def cmd_data_prepare(args: argparse.Namespace) -> int:
    dataset, fresh = prepare_dataset(
        args.dataset, source=args.source, root=args.data_dir, force=args.force
    )
    manifest = {**dataset.manifest, "path": str(prepared_folder(args.dataset, args.data_dir))}
    counts = manifest["counts"]
    verb = "prepared" if fresh else "reused"
    text = (
        f"{verb} {dataset.name}: {counts['users']} users, {counts['items']} items, "
        f"{counts['interactions']} interactions (source {manifest['source']})\n"
        f"  at {manifest['path']}\n  content hash {manifest['content_hash'][:16]}"
    )
    dropped = {k: v for k, v in (manifest.get("dropped") or {}).items() if v}
    if dropped:
        text += "\n  dropped: " + ", ".join(
            f"{v} {k.replace('_', ' ')}" for k, v in dropped.items()
        )
    _print({**manifest, "reused": not fresh}, args.json, text)
    return 0


IMPORT_FLAGS = (
    "interactions", "items", "user_col", "item_col", "time_col", "rating_col", "min_rating",
    "min_user_interactions", "min_item_interactions", "k_core", "item_id_col", "title_col",
    "text_cols", "category_col", "category_sep", "attribute_cols", "keep_catalog_items", "domain",
)  # fmt: skip


def cmd_data_import(args: argparse.Namespace) -> int:
    from ur4rec.data.importer import import_dataset, load_import_config, spec_from_mapping
    from ur4rec.data.prepare import save_imported

    given = {k: getattr(args, k) for k in IMPORT_FLAGS}
    given = {k: v for k, v in given.items() if v is not None and v is not False}
    if args.name:
        given["name"] = args.name
    if args.config:
        spec = load_import_config(args.config, given)
    else:
        spec = spec_from_mapping(given, "ur4rec data import")
    dataset = import_dataset(spec)
    rows = f"from {dataset.manifest['rows_read']} rows"
    return _saved("imported", dataset, save_imported(dataset, args.data_dir), rows, args.json)


def _saved(verb: str, dataset: Any, folder: Path, detail: str, as_json: bool) -> int:
    """What ``data import`` and ``data synth`` print: counts, where, the hash, what went."""
    manifest = {**dataset.manifest, "path": str(folder)}
    counts = manifest["counts"]
    text = (
        f"{verb} {dataset.name}: {counts['users']} users, {counts['items']} items, "
        f"{counts['interactions']} interactions {detail}\n"
        f"  at {folder}\n  content hash {manifest['content_hash'][:16]}"
    )
    for key in ("dropped", "filled"):
        changed = {k: v for k, v in (manifest.get(key) or {}).items() if v}
        if changed:
            text += f"\n  {key}: " + ", ".join(
                f"{v} {k.replace('_', ' ')}" for k, v in changed.items()
            )
    _print(manifest, as_json, text)
    return 0


def cmd_data_synth(args: argparse.Namespace) -> int:
    from ur4rec.data.prepare import save_imported
    from ur4rec.data.synth import SynthSpec, synthesise

    spec = SynthSpec(
        args.name, args.users, args.items, args.interactions, args.seed, topics=args.topics
    )
    if spec.name in DATASET_NAMES:
        raise Ur4recError(f"{spec.name!r} is a preset's name; choose another")
    dataset = synthesise(spec)
    folder = save_imported(dataset, args.data_dir)
    return _saved("synthesised", dataset, folder, f"(seed {spec.seed})", args.json)


def cmd_baseline(args: argparse.Namespace) -> int:
    if args.refit and args.split != "test":
        # Fitted on the validation targets, it would be measured on what it was fitted on.
        raise Ur4recError("--refit fits on the validation targets: measure it on --split test")
    dataset = open_dataset(args.dataset, root=args.data_dir)
    split = make_split(dataset, args.scheme)
    evaluator = Evaluator(
        dataset, split, args.split, args.protocol, ks=args.ks, groups=_group_spec(args)
    )
    model = build_baseline(
        args.model, dataset, split, args.l2, args.recent, root=args.data_dir,
        item_texts=args.item_texts, seen_items=args.seen_items, refit=args.refit,
        alpha=args.alpha, beta=args.beta,
    )  # fmt: skip
    result = {"model": args.model, **evaluator.evaluate(model), **describe_baseline(model)}
    if args.refit:
        result["fitted_on"] = "training part and validation targets"
    if args.model.startswith("ease"):
        result["lambda_from"] = "--lambda" if args.l2 is not None else "validation"
    if args.model == "rp3beta":
        chosen = [k for k in ("alpha", "beta") if getattr(args, k) is None]
        given = [f"--{k}" for k in ("alpha", "beta") if k not in chosen]
        result["alpha_beta_from"] = " ".join(given + ([f"validation ({', '.join(chosen)})"]
                                                       if chosen else []))  # fmt: skip
    _print_metrics(result, args.json)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    names = ("ml-100k", "ml-100k-liked")
    for name in names:
        dataset, fresh = prepare_dataset(name, root=args.data_dir)
        if not args.json:
            c = dataset.manifest["counts"]
            print(
                f"{'prepared' if fresh else 'reused'} {name}: {c['users']} users, "
                f"{c['items']} items, {c['interactions']} interactions"
            )
    rows = baseline_table(names, root=args.data_dir)
    columns = ["dataset", "protocol", "model", "users", *METRIC_COLUMNS, "hit@20"]
    text = (
        "\nBaselines, test split (leave-one-out); the user's own items are left out under "
        f"'full' and ranked last under {SAMPLED_99}:\n"
    )
    _print(rows, args.json, text + format_table(rows, columns))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ur4rec.train import distributed

    if args.nproc < 1:
        raise Ur4recError(f"--nproc must be >= 1, got {args.nproc}")
    if args.nproc > 1 and not distributed.launched_by_torchrun():
        return distributed.launch(distributed.without_nproc(args.argv), args.nproc)
    here = distributed.init_from_env()
    try:
        code = _train(args)
    finally:
        distributed.shutdown()
    return code if here.main else 0


def cmd_tune(args: argparse.Namespace) -> int:
    from ur4rec.train.tune import tune

    result = tune(
        args.config, args.space, args.trials, args.out, storage=args.storage,
        study_name=args.study, jobs=args.jobs, sampler=args.sampler, pruner=args.pruner,
        seed=args.seed, overrides=args.set, data_dir=args.data_dir, quiet=args.quiet or args.json,
    )  # fmt: skip
    best = result.best
    shown = [{k: v for k, v in r.items() if k not in ("run", "error")} for r in result.trials]
    text = format_table(shown, list(dict.fromkeys(k for r in shown for k in r)))
    if best is None:
        text += f"\nno trial finished; see {result.out / 'trials.md'}"
    else:
        text += (
            f"\nbest: trial {best['trial']}, validation {best['value']:.4f}; its config: "
            f"{result.out / 'best.yaml'} (train it with ur4rec train --config)"
        )
    _print({"out": str(result.out), "best": best, "trials": result.trials,
            "files": result.files}, args.json, text)  # fmt: skip
    return 0 if best is not None else 1


def _train(args: argparse.Namespace) -> int:
    from ur4rec.config import load_config
    from ur4rec.train import run
    from ur4rec.train.distributed import world

    if args.resume:
        if args.config or args.set or args.force:
            raise Ur4recError(
                "--resume continues a run with its saved config; drop --config/--set/--force"
            )
        run_dir = run.resume(Path(args.resume), data_dir=args.data_dir, quiet=args.quiet)
    else:
        if not args.config:
            raise Ur4recError("train needs --config FILE (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else None
        run_dir = run.train(cfg, out, data_dir=args.data_dir, quiet=args.quiet, force=args.force)
    if not world().main:  # rank 0 reports
        return 0
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    summary["run"] = str(run_dir)
    test = summary["test"]
    if "stages" in summary:  # a staged run: its last stage's best checkpoint is the run's
        done = summary["stages"]
        at = (
            f"at its epoch {summary['best_epoch']}"
            if summary["best_epoch"]
            else "its start: no epoch beat it on validation"
        )
        fit = (
            f"{len(done)} stages, {summary['epochs_run']} epochs in all, best of the last "
            f"stage ({done[-1]['stage']}) {at}"
        )
    else:
        fit = f"best epoch {summary['best_epoch']} of {summary['epochs_run']}"
        fit += " (stopped early)" if summary["stopped_early"] else ""
    text = (
        f"run {run_dir}: {fit}, {summary['train_seconds']:.1f}s training\n"
        + format_table(
            [
                {"split": "valid", **summary["valid"]},
                {"split": "test", **{k: v for k, v in test.items() if "@" in k}},
            ],
            ["split", *METRIC_COLUMNS, "hit@20"],
        )
        + f"\n(protocol {test['protocol']}; for another: "
        f"ur4rec evaluate {run_dir} --protocol {SAMPLED_99})"
    )
    _print(summary, args.json, text)
    return 0


def cmd_refit(args: argparse.Namespace) -> int:
    from ur4rec.train.refit import refit

    summary = refit(Path(args.run_dir), data_dir=args.data_dir, quiet=args.quiet or args.json)
    info = summary["refit"]
    before, after = info["test_before_refit"] or {}, summary["test"]
    rows = [
        {"model": label, **{k: v for k, v in result.items() if k in METRIC_COLUMNS}}
        for label, result in (("chosen checkpoint", before), ("refit", after))
        if result
    ]
    text = (
        f"refit {args.run_dir} on the training part and the validation targets: epochs "
        f"{', '.join(map(str, info['epochs']))} ({info['train_seconds']:.0f} s); test, "
        f"protocol {after.get('protocol')}:\n" + format_table(rows, ["model", *METRIC_COLUMNS])
    )
    _print({"run": args.run_dir, **info, "test": after}, args.json, text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ur4rec.train import run

    result = run.evaluate(
        Path(args.run_dir),
        args.protocol,
        args.split,
        data_dir=args.data_dir,
        checkpoint=args.checkpoint,
        ks=args.ks,
        groups=_group_spec(args),
        seen_items=args.seen_items,
    )
    _print_metrics(result, args.json)
    return 0


def cmd_texts_generate(args: argparse.Namespace) -> int:
    from ur4rec.data.sources import data_dir
    from ur4rec.text.generate import ResponseCache, build_jobs, generate, manifest_for
    from ur4rec.text.llm import ChatClient
    from ur4rec.text.store import default_text_path, write_texts

    dataset = open_dataset(args.dataset, root=args.data_dir)
    jobs = build_jobs(dataset, args.kind, args.scheme)
    if args.limit:
        jobs = jobs[: args.limit]
    client = None
    cache = None
    if args.backend == "openai":
        if not args.model:
            raise Ur4recError("--backend openai needs --model (e.g. gpt-4o-mini, or your server's)")
        client = ChatClient(
            base_url=args.base_url,
            model=args.model,
            temperature=args.temperature,
            max_tokens=args.max_tokens,
            api_key_env=args.api_key_env,
            timeout=args.timeout,
            max_retries=args.retries,
        )
        cache = ResponseCache(data_dir(args.data_dir) / "llm-cache")
    result = generate(jobs, client, cache, args.concurrency, quiet=args.quiet or args.json)
    out = (
        Path(args.out)
        if args.out
        else default_text_path(data_dir(args.data_dir), dataset.name, args.kind, args.backend)
    )
    manifest = manifest_for(dataset, args.kind, args.scheme, client, result)
    write_texts(out, result.texts, manifest)
    counts = ", ".join(f"{n} {k}" for k, n in sorted(manifest["status_counts"].items()))
    tokens = manifest["usage"].get("total_tokens")
    text = f"wrote {len(result.texts)} {args.kind} texts to {out} ({counts})" + (
        f"; {tokens} tokens" if tokens else ""
    )
    if manifest["fallback_ids"]:
        text += f"\n  {len(manifest['fallback_ids'])} fell back to the template; see the manifest"
    _print({**manifest, "path": str(out)}, args.json, text)
    return 0


def cmd_texts_import(args: argparse.Namespace) -> int:
    from ur4rec.data.sources import data_dir
    from ur4rec.text.corpus import import_texts
    from ur4rec.text.store import default_text_path, write_texts

    dataset = open_dataset(args.dataset, root=args.data_dir)
    texts, report = import_texts(dataset, args.kind, args.file, args.scheme)
    out = (
        Path(args.out)
        if args.out
        else default_text_path(data_dir(args.data_dir), dataset.name, args.kind, "import")
    )
    write_texts(out, texts, report)
    filled = report["filled_by_template"]
    text = (
        f"wrote {len(texts)} {args.kind} texts to {out}: {report['imported']} imported, "
        f"{len(filled)} missing or placeholder ids filled by the template"
        + (f" ({', '.join(filled[:10])}{', ...' if len(filled) > 10 else ''})" if filled else "")
    )
    _print({**report, "path": str(out)}, args.json, text)
    return 0


def cmd_texts_encode(args: argparse.Namespace) -> int:
    import time

    from ur4rec.data.sources import data_dir
    from ur4rec.text.corpus import embed
    from ur4rec.text.encoder import TextEncoder
    from ur4rec.text.store import read_texts

    dataset = open_dataset(args.dataset, root=args.data_dir)
    texts = read_texts(args.texts) if args.texts else None
    encoder = TextEncoder(args.model, cache_dir=data_dir(args.data_dir) / "embeddings")
    start = time.perf_counter()
    from ur4rec.train.trainer import progress_disabled

    show = not progress_disabled(args.json)
    vectors = embed(dataset, args.kind, texts, encoder, args.scheme, show_progress=show)
    seconds = time.perf_counter() - start
    result = {
        "dataset": dataset.name, "kind": args.kind, "texts": len(vectors),
        "encoded": encoder.last_encoded, "from_cache": len(vectors) - encoder.last_encoded,
        "dim": int(vectors.shape[1]), "model": encoder.model_name,
        "cache": str(encoder.cache_dir), "seconds": round(seconds, 2),
    }  # fmt: skip
    text = (
        f"{result['texts']} {args.kind} embeddings ({result['dim']}-d, {encoder.model_name}): "
        f"{result['encoded']} encoded, {result['from_cache']} from the cache, {seconds:.1f}s"
    )
    _print(result, args.json, text)
    return 0


def cmd_texts_audit(args: argparse.Namespace) -> int:
    from ur4rec.text.audit import audit_texts
    from ur4rec.text.store import read_texts

    dataset = open_dataset(args.dataset, root=args.data_dir)
    result = audit_texts(dataset, read_texts(args.texts), args.scheme)
    verdict = "LEAKAGE: user texts mention held-out items" if result.leaked else "no leakage found"
    text = (
        f"{verdict}\n"
        f"  users audited: {result.users} (without a text: {result.missing_users})\n"
        f"  texts naming the test item:       {result.test_share:.1%} (z = {result.z_test:.1f})\n"
        f"  texts naming the validation item: {result.valid_share:.1%} (z = {result.z_valid:.1f})\n"
        f"  control, random unrated items:    {result.control_share:.1%}\n"
        f"  mentions explained by training titles (not counted): {result.explained}"
    )
    _print({"dataset": dataset.name, "texts": args.texts, **result.to_json()}, args.json, text)
    return 3 if result.leaked else 0


def _format_recommendations(result: dict) -> str:
    who = f"user {result['user']}" if result["user"] is not None else "an ad-hoc history"
    head = (
        f"top {len(result['items'])} for {who} "
        f"({result['model']}, history of {result['history_length']})"
    )
    extras = []
    if result.get("sasrec_weight") is not None:
        prior = result.get("prior_weight")
        cooc = result.get("cooccurrence_weights")
        extras.append(
            f"fusion weight: SASRec {result['sasrec_weight']:.2f}"
            + (f", EASE prior {prior:.2f}" if prior is not None else "")
            + (
                f", co-occurrence {cooc['cooccurrence_weight']:.2f} (rare items: "
                f"+{cooc['rare_weight']:.2f}, bonus {cooc['rare_bonus']:.2f})"
                if cooc
                else ""
            )
        )
    if result.get("router"):
        extras.append("router (expert weights): " + ", ".join(f"{w:.2f}" for w in result["router"]))
    rows = []
    lines = []
    for rec in result["items"]:
        row = {"rank": rec["rank"], "item": rec["item"], "title": rec["title"]}
        row["score"] = f"{rec['score']:.3f}"
        for branch, value in rec["scores"].items():
            row[branch] = f"{value:.3f}"
        rows.append(row)
        why = rec.get("explanation")
        if why:
            parts = []
            if why.get("history_item"):
                near = why["history_item"]
                parts.append(f"like {near['title']} ({why['history_similarity']:.2f})")
            if why.get("preference_sentence"):
                parts.append(
                    f'matches "{why["preference_sentence"]}" ({why["preference_similarity"]:.2f})'
                )
            line = f"  {rec['rank']}. {rec['title']}: " + "; ".join(parts)
            if why.get("sentence"):
                line += f"\n     {why['sentence']}"
            lines.append(line)
    text = head + "\n" + format_table(rows, list(rows[0]) if rows else ["rank"])
    if extras:
        text += "\n" + "\n".join(extras)
    if lines:
        text += "\nwhy:\n" + "\n".join(lines)
    for note in result.get("notes", []):
        text += f"\nnote: {note}"
    return text


def cmd_recommend(args: argparse.Namespace) -> int:
    from ur4rec.serve.recommender import Recommender

    if (args.user is None) == (args.history is None):
        raise Ur4recError("give exactly one of --user RAW_ID or --history ID,ID,...")
    mode = "none" if args.no_explain else args.explain
    explainer = llm_explainer(args) if mode == "llm" else None
    recommender = Recommender(Path(args.run_dir), args.data_dir, args.checkpoint)
    explain = mode != "none"
    if args.user is not None:
        result = recommender.recommend_user(args.user, args.k, explain)
    else:
        history = [h.strip() for h in args.history.split(",") if h.strip()]
        result = recommender.recommend_history(history, args.k, args.text, explain)
    out = result.to_json()
    if explainer is not None:
        from ur4rec.text.domain import domain_of

        explainer.domain = domain_of(recommender.dataset)
        out = explainer.explain(out)
    _print(out, args.json, _format_recommendations(out))
    return 0


def llm_explainer(args: argparse.Namespace) -> Any:
    """The LLM explainer of ``--explain llm`` (its answers cached in DATA_DIR/llm-cache)."""
    from ur4rec.serve.explain import explainer_from_spec

    if not args.llm_model:
        raise Ur4recError("--explain llm needs --llm-model (e.g. gpt-4o-mini, or your server's)")
    return explainer_from_spec(llm_spec(args))


def llm_spec(args: argparse.Namespace) -> dict[str, Any] | None:
    from ur4rec.data.sources import data_dir

    if not args.llm_model:
        return None
    return {
        "base_url": args.llm_base_url, "model": args.llm_model, "api_key_env": args.api_key_env,
        "timeout": args.llm_timeout, "cache": str(data_dir(args.data_dir) / "llm-cache"),
    }  # fmt: skip


def llm_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--llm-base-url",
        default=os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"),
        help="explain llm: OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or OpenAI)",
    )
    parser.add_argument("--llm-model", help="explain llm: the LLM's name at that endpoint")
    parser.add_argument(
        "--api-key-env", default="OPENAI_API_KEY",
        help="environment variable holding the API key (never a file)",
    )  # fmt: skip
    parser.add_argument("--llm-timeout", type=float, default=20.0, help="seconds per sentence")


def read_items_file(path: Path) -> list[Any]:
    """New items from a JSON-lines file, one ``{"id", "title", "text", "metadata"?}`` per
    line; every problem is named with its line."""
    from ur4rec.runs.overlay import parse_item

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise Ur4recError(f"cannot read items file {path}: {exc}") from None
    items = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise Ur4recError(f"{path} line {number}: not JSON ({exc.msg})") from None
        items.append(parse_item(obj, f"{path} line {number}"))
    if not items:
        raise Ur4recError(f"{path} holds no items")
    return items


def cmd_items_add(args: argparse.Namespace) -> int:
    from ur4rec.serve.recommender import Recommender

    items = read_items_file(Path(args.file))
    recommender = Recommender(Path(args.run_dir), args.data_dir)
    added = recommender.add_items(items)
    out = {"added": added, "items": recommender.dataset.n_items}
    _print(out, args.json, f"added {len(added)} item(s); the catalogue has {out['items']} now")
    return 0


def cmd_items_list(args: argparse.Namespace) -> int:
    from ur4rec.runs.layout import read_run_info
    from ur4rec.runs.overlay import read_overlay

    cfg, _ = read_run_info(Path(args.run_dir))
    items = [item.to_json() for item in read_overlay(Path(args.run_dir), cfg.text.encoder).items]
    lines = [f"{item['id']}\t{item['title']}" for item in items] or ["no items added"]
    _print({"items": items}, args.json, "\n".join(lines))
    return 0


def _default_encoder_threads(workers: int) -> int:
    # Encoding a new text is the one large product a request can need: give it this
    # process's share of the CPUs.
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, (cpus or 1) // workers)


def cmd_serve(args: argparse.Namespace) -> int:
    from ur4rec.serve.app import serve

    if args.workers < 1 or args.threads < 1:
        raise Ur4recError("--workers and --threads must be at least 1")
    if args.cache_size < 0:
        raise Ur4recError(f"--cache-size must be >= 0, got {args.cache_size}")
    if not 1 <= args.port <= 65535:
        raise Ur4recError(f"--port must be between 1 and 65535, got {args.port}")
    if args.encoder_threads is not None and args.encoder_threads < 1:
        raise Ur4recError(f"--encoder-threads must be at least 1, got {args.encoder_threads}")
    serve(
        Path(args.run_dir), args.data_dir, args.checkpoint, args.host, args.port,
        args.threads, args.workers, args.access_log, args.cache_size,
        args.encoder_precision, args.encoder_threads or _default_encoder_threads(args.workers),
        llm=llm_spec(args), index=args.index, encoder_runtime=args.encoder_runtime,
    )  # fmt: skip
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from ur4rec.report.build import write_report

    ablation = Path(args.ablation) if args.ablation else None
    path = write_report(Path(args.run_dir), args.data_dir, ablation)
    _print({"report": str(path)}, args.json, f"wrote {path} (and its plots beside it)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ur4rec", description="UR4Rec: SASRec fused with a text preference retriever."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="prepare datasets").add_subparsers(
        dest="data_command", required=True, metavar="ACTION"
    )
    prep = data.add_parser("prepare", help="prepare a dataset (reused once prepared)")
    prep.add_argument(
        "dataset", choices=DATASET_NAMES, metavar="DATASET", help=f"one of: {', '.join(DATASETS)}"
    )
    prep.add_argument(
        "--source",
        help="a folder of GroupLens raw files, or one of: cache, recbole, download "
        "(default: try them in that order)",
    )
    prep.add_argument("--force", action="store_true", help="prepare again even if up to date")
    _common(prep)
    prep.set_defaults(func=cmd_data_prepare)

    imp_data = data.add_parser(
        "import", help="import an interaction log (and item table) as a dataset NAME"
    )
    imp_data.add_argument("name", nargs="?", metavar="NAME", help="the dataset's name")
    imp_data.add_argument("--config", help="a YAML file of these options (flags override it)")
    imp_data.add_argument("--interactions", metavar="FILE", help="CSV, TSV, Parquet or JSONL")
    imp_data.add_argument("--items", metavar="FILE", help="the item table (same formats)")
    for flag, default in (
        ("user-col", "user_id"),
        ("item-col", "item_id"),
        ("time-col", "timestamp"),
    ):
        imp_data.add_argument(f"--{flag}", metavar="C", help=f"default {default}")
    imp_data.add_argument("--rating-col", metavar="C", help="optional; without it every row is 1")
    imp_data.add_argument("--min-rating", type=float, metavar="X", help="keep ratings >= X")
    imp_data.add_argument("--min-user-interactions", type=int, metavar="N")
    imp_data.add_argument("--min-item-interactions", type=int, metavar="N")
    imp_data.add_argument(
        "--k-core", action="store_true", help="repeat both minimums until they hold"
    )
    imp_data.add_argument(
        "--item-id-col", metavar="C", help="the item table's id (default --item-col)"
    )
    imp_data.add_argument("--title-col", metavar="C")
    imp_data.add_argument("--text-cols", metavar="C1,C2", help="free-text columns, joined")
    imp_data.add_argument(
        "--category-col", metavar="C", help="a list, or a string split on --category-sep"
    )
    imp_data.add_argument("--category-sep", metavar="S", help="default '|'")
    imp_data.add_argument("--attribute-cols", metavar="C1,C2", help="numeric attributes")
    imp_data.add_argument(
        "--keep-catalog-items", action="store_true",
        help="keep item-table items without interactions (recommendable from their text)",
    )  # fmt: skip
    imp_data.add_argument(
        "--domain", metavar="WORD", help="what the items are, plural (default items)"
    )
    _common(imp_data)
    imp_data.set_defaults(func=cmd_data_import)

    synth = data.add_parser(
        "synth", help="a synthetic dataset: drifting topic taste, power-law items, topic texts"
    )
    synth.add_argument("name", metavar="NAME")
    synth.add_argument("--users", type=int, required=True, metavar="U")
    synth.add_argument("--items", type=int, required=True, metavar="I")
    synth.add_argument("--interactions", type=int, required=True, metavar="N")
    synth.add_argument("--seed", type=int, default=0, metavar="S")
    synth.add_argument("--topics", type=int, default=24, help="latent topics (default 24)")
    _common(synth)
    synth.set_defaults(func=cmd_data_synth)

    base = commands.add_parser("baseline", help="evaluate a non-sequential baseline")
    base.add_argument(
        "model",
        choices=BASELINES,
        help="pop (training popularity), ease (whole history), ease-recent (last items), "
        "text-knn (the last items' texts) or rp3beta (item-user-item walks)",
    )
    base.add_argument("--dataset", required=True, metavar="DATASET", help=DATASET_HELP)
    base.add_argument(
        "--protocol", default="full", help=f"{PROTOCOL_NAMES} (default full; seed = {SAMPLED_99})"
    )
    base.add_argument("--split", default="test", choices=("valid", "test"))
    base.add_argument(
        "--scheme", default="leave-one-out", type=_scheme, help=f"one of: {', '.join(SCHEMES)}"
    )
    base.add_argument(
        "--lambda",
        dest="l2",
        type=float,
        help="EASE's L2 weight (default: chosen on the validation part over "
        f"{', '.join(f'{x:g}' for x in EASE_L2_GRID)})",
    )
    base.add_argument(
        "--recent",
        type=int,
        help=f"EASE, text-knn or rp3beta reads the last N items only (0: all; ease-recent "
        f"default {EASE_RECENT}, text-knn 5, rp3beta 0)",
    )
    for key, grid in (("alpha", RP3_ALPHA_GRID), ("beta", RP3_BETA_GRID)):
        base.add_argument(
            f"--{key}",
            type=float,
            help=f"RP3beta's {key} (default: chosen on the validation part over "
            f"{', '.join(f'{x:g}' for x in grid)})",
        )
    base.add_argument("--ks", type=_parse_ks, default=DEFAULT_KS, help="cut-offs, e.g. 5,10,20")
    base.add_argument(
        "--refit",
        action="store_true",
        help="fit on the training part plus the validation targets (EASE's lambda still "
        "chosen on validation), to compare with a run after `ur4rec refit`; test split only",
    )
    _seen_items_arg(base, "auto")
    base.add_argument(
        "--item-texts", default="template",
        help="text-knn: item texts, template or a JSON file keyed by raw item id",
    )  # fmt: skip
    _group_args(base)
    _common(base)
    base.set_defaults(func=cmd_baseline)

    tr = commands.add_parser("train", help="train a model from a config (or resume a run)")
    tr.add_argument("--config", help="YAML config, e.g. configs/sasrec-ml-100k.yaml")
    tr.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a value, e.g. --set train.lr=3e-4 (repeatable)",
    )
    tr.add_argument("--out", help="run folder (default: runs/DATASET-MODEL-TIME)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    tr.add_argument(
        "--force",
        action="store_true",
        help="train into --out even if it holds another run (its run files are replaced)",
    )
    tr.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    tr.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train in N processes on this machine (DDP on gloo under torchrun, on the CPU); "
        "the same as `torchrun --nproc-per-node N -m ur4rec.cli train ...`",
    )
    _common(tr)
    tr.set_defaults(func=cmd_train)

    tune = commands.add_parser(
        "tune", help="search hyperparameters with Optuna (chosen on validation, resumable)"
    )
    tune.add_argument("--config", required=True, help="the base YAML config")
    tune.add_argument(
        "--space", required=True, help="search space YAML, e.g. configs/tune/sasrec.yaml"
    )
    tune.add_argument("--trials", type=int, required=True, help="trials in all (a resumed "
                      "search runs only the ones still missing)")  # fmt: skip
    tune.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    tune.add_argument("--storage", help="Optuna storage URL (default sqlite:///OUT/study.db)")
    tune.add_argument("--study", default="ur4rec", help="study name in the storage")
    tune.add_argument("--out", required=True, help="folder for trials, best.yaml and plots")
    tune.add_argument("--sampler", choices=["tpe", "random"], default="tpe")
    tune.add_argument("--pruner", choices=["median", "none"], default="median")
    tune.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    tune.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE",
        help="override a base config value for every trial (repeatable)",
    )  # fmt: skip
    tune.add_argument("--quiet", action="store_true", help="no epoch lines from the trials")
    _common(tune)
    tune.set_defaults(func=cmd_tune)

    ref = commands.add_parser(
        "refit",
        help="train a finished run again on training + validation targets for the epochs "
        "validation chose, and test that model",
    )
    ref.add_argument("run_dir", help="a finished run folder")
    ref.add_argument("--quiet", action="store_true", help="no epoch lines")
    _common(ref)
    ref.set_defaults(func=cmd_refit)

    ev = commands.add_parser("evaluate", help="evaluate a trained run")
    ev.add_argument("run_dir", help="a run folder written by `ur4rec train`")
    ev.add_argument(
        "--protocol", default="full", help=f"{PROTOCOL_NAMES} (default full; seed = {SAMPLED_99})"
    )
    ev.add_argument("--split", default="test", choices=("valid", "test"))
    ev.add_argument("--checkpoint", default="final", choices=CHECKPOINTS, help=CHECKPOINT_HELP)
    ev.add_argument("--ks", type=_parse_ks, default=DEFAULT_KS, help="cut-offs, e.g. 5,10,20")
    _seen_items_arg(ev, "the run's model.seen_items")
    _group_args(ev)
    _common(ev)
    ev.set_defaults(func=cmd_evaluate)

    texts = commands.add_parser("texts", help="item and user texts").add_subparsers(
        dest="texts_command", required=True, metavar="ACTION"
    )

    def text_args(p: argparse.ArgumentParser, kind: bool = True) -> None:
        p.add_argument("--dataset", required=True, metavar="DATASET", help=DATASET_HELP)
        if kind:
            p.add_argument("--kind", required=True, choices=("items", "users"))
        p.add_argument(
            "--scheme",
            "--split",
            dest="scheme",
            default="leave-one-out",
            type=_scheme,
            help=f"split whose training part user texts see ({', '.join(SCHEMES)})",
        )
        _common(p)

    gen = texts.add_parser("generate", help="write item or user texts (template or an LLM)")
    text_args(gen)
    gen.add_argument("--backend", default="template", choices=("template", "openai"))
    default_url = os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1")
    gen.add_argument(
        "--base-url",
        default=default_url,
        help="OpenAI-compatible endpoint (default: $OPENAI_BASE_URL or OpenAI)",
    )
    gen.add_argument("--model", help="the LLM's name at that endpoint")
    gen.add_argument("--temperature", type=float, default=0.7)
    gen.add_argument("--max-tokens", type=int, default=256)
    gen.add_argument("--concurrency", type=int, default=4, help="requests in flight at once")
    gen.add_argument(
        "--api-key-env",
        default="OPENAI_API_KEY",
        help="environment variable holding the API key (never a file)",
    )
    gen.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    gen.add_argument("--retries", type=int, default=5, help="retries on 429, 5xx and timeouts")
    gen.add_argument("--limit", type=int, help="only the first N ids (to try a setup)")
    gen.add_argument(
        "--out", help="output JSON (default: DATA_DIR/texts/DATASET/KIND-BACKEND.json)"
    )
    gen.add_argument("--quiet", action="store_true")
    gen.set_defaults(func=cmd_texts_generate)

    imp = texts.add_parser("import", help="import a JSON file of texts keyed by raw ids")
    text_args(imp)
    imp.add_argument("--file", required=True, help="JSON object {raw_id: text}")
    imp.add_argument("--out", help="output JSON (default: DATA_DIR/texts/DATASET/KIND-import.json)")
    imp.set_defaults(func=cmd_texts_import)

    enc = texts.add_parser("encode", help="embed texts (cached by model and text hash)")
    text_args(enc)
    enc.add_argument("--texts", help="texts JSON (default: the template texts)")
    enc.add_argument("--model", help="sentence-transformers model (default: all-MiniLM-L6-v2)")
    enc.set_defaults(func=cmd_texts_encode)

    aud = texts.add_parser("audit", help="check user texts for held-out item titles")
    text_args(aud, kind=False)
    aud.add_argument("--texts", required=True, help="user texts JSON keyed by raw user id")
    aud.set_defaults(func=cmd_texts_audit)

    rec = commands.add_parser("recommend", help="top-k unseen items for a user, explained")
    rec.add_argument("run_dir", help="a run folder written by `ur4rec train`")
    rec.add_argument("--user", help="a raw user id of the run's dataset")
    rec.add_argument("--history", help="an ad-hoc history of raw item ids, oldest first: 50,172")
    rec.add_argument("--text", help="with --history: the new user's preference text (UR4Rec)")
    rec.add_argument("-k", type=int, default=10, help="how many items (default 10)")
    rec.add_argument(
        "--explain", default="evidence", choices=("evidence", "llm", "none"),
        help="evidence (default): nearest history item and preference sentence; llm: also "
        "a sentence in words from an LLM (falls back to the evidence); none",
    )  # fmt: skip
    rec.add_argument("--no-explain", action="store_true", help="the same as --explain none")
    llm_args(rec)
    rec.add_argument("--checkpoint", default="final", choices=CHECKPOINTS, help=CHECKPOINT_HELP)
    _common(rec)
    rec.set_defaults(func=cmd_recommend)

    items = commands.add_parser("items", help="items added after training").add_subparsers(
        dest="items_command", required=True
    )
    add = items.add_parser("add", help="add new items to a run, scored from their text")
    add.add_argument("run_dir", help="a run folder of a text model (ur4rec, sasrec-content, ..)")
    add.add_argument(
        "--file", required=True, help='JSON lines: {"id", "title", "text", "metadata"?} each'
    )
    _common(add)
    add.set_defaults(func=cmd_items_add)
    ls = items.add_parser("list", help="the items added to a run")
    ls.add_argument("run_dir", help="a run folder")
    _common(ls)
    ls.set_defaults(func=cmd_items_list)

    srv = commands.add_parser("serve", help="serve a run over HTTP (FastAPI + uvicorn)")
    srv.add_argument("run_dir", help="a run folder written by `ur4rec train`")
    srv.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    srv.add_argument("--port", type=int, default=8000)
    srv.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    srv.add_argument(
        "--workers", type=int, default=1, help="processes, each with its own model (default 1)"
    )
    srv.add_argument("--access-log", action="store_true", help="log every request")
    srv.add_argument(
        "--cache-size",
        type=int,
        default=4096,
        help="sentence vectors kept per process, least recently used dropped (default 4096)",
    )
    srv.add_argument(
        "--encoder-precision",
        default="auto",
        choices=("auto", "float32", "bfloat16"),
        help="how new texts are encoded; auto: bfloat16 where the CPU has it natively",
    )
    srv.add_argument(
        "--encoder-runtime",
        default="auto",
        choices=("auto", "torch", "onnx"),
        help="what runs the sentence encoder on new texts; auto: ONNX Runtime where installed "
        "and the precision is float32 (faster for a few texts; about 250 MB more memory)",
    )
    srv.add_argument(
        "--encoder-threads",
        type=int,
        help="torch threads while encoding a new text (default: the CPUs / workers)",
    )
    srv.add_argument("--checkpoint", default="final", choices=CHECKPOINTS, help=CHECKPOINT_HELP)
    srv.add_argument(
        "--index",
        default="exact",
        choices=("exact", "ann"),
        help="exact: score every item per request (default); ann: a faiss index per "
        "dot-product branch picks candidates, scored exactly (large catalogues)",
    )
    llm_args(srv)  # explain=llm
    srv.add_argument("--data-dir", help="data folder (default: $UR4REC_DATA or the user cache)")
    srv.set_defaults(func=cmd_serve)

    rep = commands.add_parser("report", help="write REPORT.md and plots into a run folder")
    rep.add_argument("run_dir", help="a finished run folder")
    rep.add_argument(
        "--ablation", help="results.jsonl of benchmarks/ur4rec_quality.py (default: beside the run)"
    )
    _common(rep)
    rep.set_defaults(func=cmd_report)

    quick = commands.add_parser("quickstart", help="the main job: prepare data, print baselines")
    _common(quick)
    quick.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except Ur4recError as exc:
        print(f"ur4rec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ur4rec: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:  # a read-only or full disk, a folder where a file should be, ...
        print(f"ur4rec: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
