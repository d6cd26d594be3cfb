"""EASE over each user's last R items: the validation sweep that chose the ease-recent baseline.

    .venv/bin/python benchmarks/ease_recent.py [--dataset ml-100k-liked]

Fits EASE on the training part for each lambda, scores with the last R items of each history
only, and prints validation NDCG@10 (full protocol) for every (lambda, R), then the best
setting's valid and test figures under the full and seed protocols next to EASE on the whole
history. Chosen on validation only.
"""

from __future__ import annotations

import argparse

from ur4rec.data.prepare import open_dataset
from ur4rec.data.splits import make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.evaluator import Evaluator
from ur4rec.measures import SAMPLED_99

LAMBDAS = (250.0, 500.0, 1000.0, 2000.0)
RECENT = (1, 2, 3, 5, 8, 20, 0)  # 0: the whole history


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--dataset", default="ml-100k-liked")
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    dataset = open_dataset(args.dataset, root=args.data_dir)
    split = make_split(dataset)
    valid = Evaluator(dataset, split, "valid", "full")
    print(f"{args.dataset}: validation NDCG@10 (full) of EASE over the last R items (0 = all)")
    print("lambda  " + "  ".join(f"R={r:<4}" for r in RECENT))
    best: tuple[float, float, int] | None = None
    for l2 in LAMBDAS:
        model = build_baseline("ease", dataset, split.train, l2=l2)
        cells = []
        for recent in RECENT:
            model.recent = recent
            ndcg = valid.evaluate(model)["ndcg@10"]
            cells.append(f"{ndcg:.4f}")
            if best is None or ndcg > best[0]:
                best = (ndcg, l2, recent)
        print(f"{l2:<6.0f}  " + "  ".join(cells))
    assert best is not None
    _, l2, recent = best
    print(f"\nbest on validation: lambda {l2:.0f}, R {recent}")
    chosen = build_baseline("ease", dataset, split.train, l2=l2, recent=recent)
    whole = build_baseline("ease", dataset, split.train, l2=500.0)
    for part in ("valid", "test"):
        for protocol in ("full", SAMPLED_99):
            evaluator = Evaluator(dataset, split, part, protocol)
            a, b = evaluator.evaluate(chosen), evaluator.evaluate(whole)
            print(
                f"{part:<5} {protocol:<4}  last {recent}: Hit@10 {a['hit@10']:.4f} "
                f"NDCG@10 {a['ndcg@10']:.4f}   whole history (lambda 500): "
                f"Hit@10 {b['hit@10']:.4f} NDCG@10 {b['ndcg@10']:.4f}"
            )


if __name__ == "__main__":
    main()
