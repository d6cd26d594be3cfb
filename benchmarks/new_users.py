"""New users: a history of at most N items, with and without a preference text.

    .venv/bin/python benchmarks/new_users.py --scheme leave-one-out --seeds 42,43,44

Every test user of the split is served as a user the model has never seen (id -1) whose
history is only the last ``--history`` items before the test target (default 3), as a new
user who has rated a few items would be. Rows: SASRec, SASRec over content and UR4Rec (the
runs benchmarks/cold_start.py trained for the scheme, which must exist), text-kNN (fitted),
and for UR4Rec two ways to get a preference text:

- ``template``: written from the few items by the template, as the service does when none
  is given;
- ``preference``: the user's own template text from their whole training part (leak-free:
  it names only training items), standing for a sentence a new user writes about their
  taste.

Full ranking; the items of the short history are excluded, nothing else. Paired intervals
(users resampled, seeds paired): UR4Rec with the preference text against without, and
against SASRec. Writes docs/results/new-users-SCHEME.json; benchmarks/results_doc.py renders
it.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cold_start import DATASET, paired, summarise
from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.batches import HistoryBatch
from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import PAD, make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.groups import group_metrics
from ur4rec.io import atomic_write_json
from ur4rec.runs.load import load_run
from ur4rec.text.history import SeenItem, UserHistory
from ur4rec.text.templates import user_text

ROOT = Path(__file__).resolve().parent.parent
LABELS = {
    "sasrec": "SASRec, ids only",
    "sasrec-content": "SASRec over content embeddings",
    "text-knn": "text-kNN (template texts)",
    "ur4rec-template": "UR4Rec, text from the few items (template)",
    "ur4rec-preference": "UR4Rec, the user's preference text",
    "ur4rec-default-template": "UR4Rec, main job's config, text from the few items",
    "ur4rec-default-preference": "UR4Rec, main job's config, the user's preference text",
}


def short_histories(dataset: Any, part: Any, n: int) -> tuple[np.ndarray, np.ndarray, list]:
    """(targets, histories [users, n] left-padded, the histories as lists) for a split part."""
    targets, rows = [], []
    for user, length in zip(part.users.tolist(), part.lengths.tolist(), strict=True):
        sequence = dataset.sequence(user)
        targets.append(int(sequence[length]))
        rows.append(sequence[max(0, length - n) : length].tolist())
    padded = np.array([[PAD] * (n - len(r)) + r for r in rows], dtype=np.int64)
    return np.array(targets), padded, rows


@torch.inference_mode()
def ranks_of(model: Any, items: torch.Tensor, targets: np.ndarray, text: torch.Tensor | None):
    """0-based rank of each target among all items but the history's, for new users."""
    out = []
    for start in range(0, len(items), 256):
        rows = slice(start, start + 256)
        batch = HistoryBatch(torch.full((len(items[rows]),), -1), items[rows])
        states = model.user_states(batch, user_text=None if text is None else text[rows])
        scores = model.scores_from_states(states)["score"].clone()
        history = items[rows]
        r, c = torch.nonzero(history != PAD, as_tuple=True)
        scores[r, history[r, c]] = float("-inf")
        target = torch.from_numpy(targets[rows])
        mine = scores.gather(1, target[:, None])
        out.append((scores > mine).sum(dim=1).numpy())
    return np.concatenate(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scheme", default="leave-one-out")
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--history", type=int, default=3, help="items a new user brings")
    parser.add_argument("--runs", type=Path, help="default runs/cold-start/SCHEME")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    slug = args.scheme.replace(":", "-")
    runs = args.runs or ROOT / "runs" / "cold-start" / slug
    dataset = open_dataset(DATASET, root=args.data_dir)
    split = make_split(dataset, args.scheme)
    targets, padded, rows = short_histories(dataset, split.test, args.history)
    items = torch.from_numpy(padded)

    from ur4rec.text.encoder import TextEncoder

    encoder = TextEncoder("all-MiniLM-L6-v2", cache_dir=None)
    templates = [
        user_text(UserHistory("new", tuple(
            SeenItem(dataset.item_ids[i], dataset.item_info[i], 4.0, t) for t, i in enumerate(r)
        )))
        for r in rows
    ]  # fmt: skip
    template_vectors = torch.from_numpy(encoder.encode(templates, remember=False))
    ranks: dict[str, list[np.ndarray]] = {label: [] for label in LABELS}
    used: dict[str, Path] = {}
    knn = build_baseline("text-knn", dataset, split, root=args.data_dir)
    for _ in seeds:
        ranks["text-knn"].append(ranks_of(knn, items, targets, None))
    names = ["sasrec", "sasrec-content", "ur4rec"]
    if all((runs / f"ur4rec-default-s{seed}" / "summary.json").is_file() for seed in seeds):
        names.append("ur4rec-default")  # cold_start.py --default-ur4rec trained it
    else:
        for label in ("ur4rec-default-template", "ur4rec-default-preference"):
            del ranks[label]
    for seed in seeds:
        for name in names:
            run_dir = runs / f"{name}-s{seed}"
            if not (run_dir / "summary.json").is_file():
                raise SystemExit(f"{run_dir} is missing: run benchmarks/cold_start.py first")
            used[f"{name}-s{seed}"] = run_dir
            model = load_run(run_dir, args.data_dir)[2]
            model.prepare_for_inference()
            if not name.startswith("ur4rec"):
                ranks[name].append(ranks_of(model, items, targets, None))
                continue
            ranks[f"{name}-template"].append(ranks_of(model, items, targets, template_vectors))
            users = torch.from_numpy(split.test.users)
            none: list[Any] = [None] * len(users)
            own = model.preference_vectors(users, none, none)
            ranks[f"{name}-preference"].append(ranks_of(model, items, targets, own))
    stacked = {label: np.stack(r) for label, r in ranks.items()}
    everyone = {"all": np.ones(len(targets), dtype=bool)}
    table = []
    for label, by_seed in stacked.items():
        per_seed = [group_metrics(r, everyone, ks=(10,)) for r in by_seed]
        table.append({"model": label, "label": LABELS[label], "test": summarise(per_seed)})
    mask = everyone["all"]
    comparisons = [
        {"a": "ur4rec-preference", "b": "ur4rec-template",
         **paired(stacked["ur4rec-preference"], stacked["ur4rec-template"], mask)},
        {"a": "ur4rec-template", "b": "sasrec",
         **paired(stacked["ur4rec-template"], stacked["sasrec"], mask)},
        {"a": "ur4rec-preference", "b": "text-knn",
         **paired(stacked["ur4rec-preference"], stacked["text-knn"], mask)},
    ]  # fmt: skip
    document = {
        "scheme": args.scheme, "dataset": DATASET, "protocol": "full", "seeds": seeds,
        "history": args.history, "users": len(targets), "rows": table,
        "comparisons": comparisons,
        "runs": {key: run_provenance(path) for key, path in used.items()},
        "provenance": result_provenance(command_line(__file__), data_hashes=[dataset.content_hash]),
    }  # fmt: skip
    out = ROOT / "docs" / "results" / f"new-users-{slug}.json"
    atomic_write_json(out, document)
    print(f"new users with {args.history} items, {len(targets)} test users, {args.scheme}, "
          f"seeds {args.seeds}: test NDCG@10 / Hit@10 (full ranking)")  # fmt: skip
    for row in table:
        t = row["test"]["all"]
        print(f"  {row['label']:<48} {t['ndcg@10']:.4f}  {t['hit@10']:.4f}")
    for c in comparisons:
        print(f"  {c['a']} - {c['b']}: {c['text']}")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
