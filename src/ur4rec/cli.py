"""The ``ur4rec`` command line."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ur4rec.data.dataset import DATASETS
from ur4rec.data.prepare import open_dataset, prepare_dataset, prepared_folder
from ur4rec.data.splits import SCHEMES, make_split
from ur4rec.errors import Ur4recError
from ur4rec.eval.baselines import BASELINES, baseline_table, build_baseline
from ur4rec.eval.evaluator import Evaluator
from ur4rec.eval.metrics import DEFAULT_KS
from ur4rec.report_table import format_table

METRIC_COLUMNS = ("hit@10", "ndcg@10", "mrr@10")


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


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="data folder (default: $UR4REC_DATA or the user cache)")
    parser.add_argument("--json", action="store_true", help="print JSON for scripts")


def _print(obj: object, as_json: bool, text: str) -> None:
    print(json.dumps(obj, indent=2) if as_json else text)


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
    _print({**manifest, "reused": not fresh}, args.json, text)
    return 0


def cmd_baseline(args: argparse.Namespace) -> int:
    dataset = open_dataset(args.dataset, root=args.data_dir)
    split = make_split(dataset, args.scheme)
    evaluator = Evaluator(dataset, split, args.split, args.protocol, ks=args.ks)
    result = {
        "model": args.model,
        **evaluator.evaluate(build_baseline(args.model, dataset, split.train, args.l2)),
    }
    if args.model == "ease":
        result["lambda"] = args.l2
    columns = [c for c in result if "@" in c]
    text = (
        f"{args.model} on {dataset.name} ({split.scheme}, {args.split}, protocol "
        f"{evaluator.protocol.name}, {len(evaluator)} users)\n" + format_table([result], columns)
    )
    _print(result, args.json, text)
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    names = ("ml-100k", "ml-100k-seed")
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
    text = "\nBaselines, test split (leave-one-out), history masked under 'full':\n"
    _print(rows, args.json, text + format_table(rows, columns))
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ur4rec.config import load_config
    from ur4rec.train import run

    if args.resume:
        if args.config or args.set:
            raise Ur4recError("--resume continues a run with its saved config; drop --config/--set")
        run_dir = run.resume(Path(args.resume), data_dir=args.data_dir, quiet=args.quiet)
    else:
        if not args.config:
            raise Ur4recError("train needs --config FILE (or --resume RUN_DIR)")
        cfg = load_config(args.config, args.set)
        out = Path(args.out) if args.out else None
        run_dir = run.train(cfg, out, data_dir=args.data_dir, quiet=args.quiet)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    summary["run"] = str(run_dir)
    test = summary["test"]
    text = (
        f"run {run_dir}: best epoch {summary['best_epoch']} of {summary['epochs_run']}"
        f"{' (stopped early)' if summary['stopped_early'] else ''}, "
        f"{summary['train_seconds']:.1f}s training\n"
        + format_table(
            [
                {"split": "valid", **summary["valid"]},
                {"split": "test", **{k: v for k, v in test.items() if "@" in k}},
            ],
            ["split", *METRIC_COLUMNS, "hit@20"],
        )
        + f"\n(protocol {test['protocol']}; for another: "
        f"ur4rec evaluate {run_dir} --protocol seed)"
    )
    _print(summary, args.json, text)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ur4rec.train import run

    result = run.evaluate(
        Path(args.run_dir), args.protocol, args.split, data_dir=args.data_dir,
        checkpoint=args.checkpoint, ks=args.ks,
    )  # fmt: skip
    columns = [c for c in result if "@" in c]
    text = (
        f"{result['model']} ({args.run_dir}) on {result['dataset']}: {args.split}, protocol "
        f"{result['protocol']}, {result['users']} users\n" + format_table([result], columns)
    )
    _print(result, args.json, text)
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
    prep.add_argument("dataset", choices=list(DATASETS), metavar="DATASET",
                      help=f"one of: {', '.join(DATASETS)}")  # fmt: skip
    prep.add_argument(
        "--source",
        help="a folder of GroupLens raw files, or one of: cache, recbole, download "
        "(default: try them in that order)",
    )
    prep.add_argument("--force", action="store_true", help="prepare again even if up to date")
    _common(prep)
    prep.set_defaults(func=cmd_data_prepare)

    base = commands.add_parser("baseline", help="evaluate a non-sequential baseline")
    base.add_argument("model", choices=BASELINES, help="pop (training popularity) or ease")
    base.add_argument("--dataset", required=True, choices=list(DATASETS), metavar="DATASET")
    base.add_argument("--protocol", default="full",
                      help="full (default), seed, sampled:N or popsampled:N")  # fmt: skip
    base.add_argument("--split", default="test", choices=("valid", "test"))
    base.add_argument("--scheme", default="leave-one-out", choices=SCHEMES)
    base.add_argument("--lambda", dest="l2", type=float, default=500.0, help="EASE L2 weight")
    base.add_argument("--ks", type=_parse_ks, default=DEFAULT_KS, help="cut-offs, e.g. 5,10,20")
    _common(base)
    base.set_defaults(func=cmd_baseline)

    tr = commands.add_parser("train", help="train a model from a config (or resume a run)")
    tr.add_argument("--config", help="YAML config, e.g. configs/sasrec-ml-100k.yaml")
    tr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a value, e.g. --set train.lr=3e-4 (repeatable)")  # fmt: skip
    tr.add_argument("--out", help="run folder (default: runs/DATASET-MODEL-TIME)")
    tr.add_argument("--resume", metavar="RUN_DIR", help="continue a stopped run")
    tr.add_argument("--quiet", action="store_true", help="no progress bars or epoch lines")
    _common(tr)
    tr.set_defaults(func=cmd_train)

    ev = commands.add_parser("evaluate", help="evaluate a trained run")
    ev.add_argument("run_dir", help="a run folder written by `ur4rec train`")
    ev.add_argument("--protocol", default="full",
                    help="full (default), seed, sampled:N or popsampled:N")  # fmt: skip
    ev.add_argument("--split", default="test", choices=("valid", "test"))
    ev.add_argument("--checkpoint", default="best", choices=("best", "last"))
    ev.add_argument("--ks", type=_parse_ks, default=DEFAULT_KS, help="cut-offs, e.g. 5,10,20")
    _common(ev)
    ev.set_defaults(func=cmd_evaluate)

    quick = commands.add_parser("quickstart", help="the main job: prepare data, print baselines")
    _common(quick)
    quick.set_defaults(func=cmd_quickstart)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except Ur4recError as exc:
        print(f"ur4rec: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ur4rec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
