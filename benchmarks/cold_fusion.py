"""Why the fused UR4Rec buries new items: its branches and three repairs, on validation only.

    .venv/bin/python benchmarks/cold_fusion.py

Reads three runs benchmarks/cold_start.py trained (seed 42): UR4Rec's cold config on the
cold-items split, on template texts and on the LLM item descriptions (``--llm-texts``), and
the main job's config on the leave-one-out split. On the validation
part, NDCG@10 (full ranking) for all users and by group, of:

- each branch alone (SASRec, the retriever) and the fused model, with its calibrated EASE
  prior and without it;
- a new item's prior column filled from its k text-nearest trained items (k = 5, 20, 50;
  softmax over cosine / 0.05), at prior weights 0.1 to 0.5;
- a constant bonus b added to new items' fused scores;
- new items ranked among themselves only (an oracle that knows the target is new), by each
  branch and by their true popularity over the whole log: the most any placement could reach;
- three ways to place new items among the trained ones: their score standardised over the
  new items alone, a * z + b; a two-part mixture (a share pi for the new items); and each
  new item at the fused score of the trained item its SASRec branch ranks beside it;
- (both cold-items runs: template texts and the LLM item descriptions) a new item's
  popularity predicted from its text (ridge regression, fixed lambda 1, from the trained
  items' text embeddings to their log training counts): new items ranked among themselves by
  it alone and by the fused score plus a times its z-score, then placed among the trained
  items by a bonus, or in one slot just above the trained item at rank r;
- (leave-one-out) a text-kNN branch added to the fused scores: c times its per-user z-score;
  a bonus for rare candidates (1-19 training interactions), with or without that branch, or
  scaled per user by the share of rare items among their last 10; and
  popularity buckets (head, rare, new) as a mixture with a small share for the rare ones;
  and a learned reranker of both candidate lists (logistic regression on 15 features, 5-fold
  over the validation users), its rare targets weighted 1 to 10.

Nothing here is chosen on test, and nothing of it is in the model: these are the repairs
docs/results.md reports as tried and dropped. Writes docs/results/cold-fusion.json.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from reuse import command_line, result_provenance, run_provenance
from ur4rec.data.splits import PAD, interaction_counts, make_split
from ur4rec.eval.baselines import build_baseline
from ur4rec.eval.compare import ndcg_at
from ur4rec.eval.evaluator import Evaluator
from ur4rec.io import atomic_write_json
from ur4rec.models.fusion import standardise
from ur4rec.runs.load import load_run

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "runs" / "cold-start"
OUT = ROOT / "docs" / "results" / "cold-fusion.json"


class Adjusted(torch.nn.Module):
    """The model's scores plus ``extra(batch)`` (a scorer for the evaluator)."""

    def __init__(self, model: Any, extra: Any) -> None:
        super().__init__()
        self.model, self.extra = model, extra

    def score(self, batch: Any) -> torch.Tensor:
        return self.model.score(batch) + self.extra(batch)


class Masked(torch.nn.Module):
    """A scorer's scores with the items ``drop`` ([n] bool) ranked last."""

    def __init__(self, scorer: Any, drop: torch.Tensor) -> None:
        super().__init__()
        self.scorer, self.drop = scorer, drop

    def score(self, batch: Any) -> torch.Tensor:
        return self.scorer.score(batch).masked_fill(self.drop, -1e9)


class Scorer(torch.nn.Module):
    """A scorer for the evaluator from a function of the batch."""

    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def score(self, batch: Any) -> torch.Tensor:
        return self.fn(batch)


def log_share(scores: torch.Tensor, members: torch.Tensor, share: float) -> torch.Tensor:
    """log(share) + the log softmax of ``scores`` over the items ``members`` ([n] bool): one
    part of a mixture that gives those items ``share`` of each user's probability."""
    return torch.log_softmax(scores.masked_fill(~members, -1e9), 1) + math.log(share)


class Rescored(torch.nn.Module):
    """``rescore(fused scores, branch scores)`` of a fused UR4Rec."""

    def __init__(self, model: Any, rescore: Any) -> None:
        super().__init__()
        self.model, self.rescore = model, rescore

    def score(self, batch: Any) -> torch.Tensor:
        branches = self.model.branch_scores(batch)
        return self.rescore(self.model.combine(branches), branches)


def figures(evaluator: Evaluator, scorer: Any) -> dict[str, float]:
    return group_ndcg(evaluator, evaluator.ranks(scorer).numpy())


def group_ndcg(evaluator: Evaluator, ranks: np.ndarray) -> dict[str, float]:
    """NDCG@10 of the evaluator's users, all and by group, from their targets' ranks."""
    groups = {"all": np.ones(len(ranks), dtype=bool), **evaluator.groups}
    return {g: round(float(ndcg_at(ranks[m]).mean()), 4) for g, m in groups.items() if m.any()}


@torch.inference_mode()
def cold_items(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir)
    evaluator = Evaluator(dataset, make_split(dataset, cfg.data.scheme), "valid")
    out: dict[str, Any] = {}
    for objective in ("sasrec", "retriever"):
        model.set_objective(objective)
        out[f"{objective} alone"] = figures(evaluator, model)
    model.set_objective("fused")
    weight = float(model.fusion.prior_weight)
    out[f"fused, prior weight {weight:g} (calibrated)"] = figures(evaluator, model)
    model.fusion.set_prior_weight(0.0)
    out["fused, no prior"] = figures(evaluator, model)
    model.fusion.set_prior_weight(weight)

    new = model.fusion.new_items
    for bonus in (0.5, 1.0, 1.5, 2.0):
        out[f"new-item bonus {bonus:g}"] = figures(
            evaluator, Adjusted(model, lambda batch, b=bonus: b * new.float())
        )

    known = model.known
    text = F.normalize(model.retriever.item_text, dim=1)
    similar = text[~known] @ text[known].T
    trained, fresh = torch.nonzero(known).squeeze(1), torch.nonzero(~known).squeeze(1)
    fitted, saved_new = model.prior.clone(), model.fusion.new_items
    model.fusion.new_items = None  # let the filled-in prior count for new items
    for k in (5, 20, 50):
        top = similar.topk(k, dim=1)
        w = torch.softmax(top.values / 0.05, dim=1)
        prior = fitted.clone()
        prior[:, fresh] = (fitted[:, trained[top.indices]] * w[None]).sum(-1)
        model.prior = prior
        for p in (0.1, 0.2, 0.3, 0.5):
            model.fusion.set_prior_weight(p)
            out[f"prior filled from {k} text neighbours, weight {p:g}"] = figures(evaluator, model)
    model.prior, model.fusion.new_items = fitted, saved_new
    model.fusion.set_prior_weight(weight)
    out.update(new_item_ceiling(model, dataset, evaluator))
    out.update(new_item_placements(model, evaluator))
    return out


def new_item_ceiling(model: Any, dataset: Any, evaluator: Evaluator) -> dict[str, Any]:
    """How well anything here ranks new items among themselves: each scorer with every
    trained item left out (an oracle that knows the target is new), and the new items' true
    popularity over the whole log (unreachable: it counts the held-out interactions)."""
    new = model.fusion.new_items
    among_new = {}
    for objective in ("fused", "sasrec", "retriever"):
        model.set_objective(objective)
        among_new[f"{objective}, among new items only"] = figures(evaluator, Masked(model, ~new))
    model.set_objective("fused")
    counts = torch.bincount(torch.as_tensor(dataset.item), minlength=dataset.n_items)
    popularity = torch.log1p(counts.float())
    among_new["true popularity (whole log), among new items only"] = figures(
        evaluator, Masked(Scorer(lambda batch: popularity.expand(len(batch.items), -1)), ~new)
    )
    return among_new


def new_item_placements(model: Any, evaluator: Evaluator) -> dict[str, Any]:
    """Three ways to place new items among the trained ones, each a small grid: their
    content score standardised over the new items alone, then a * z + b; a two-part
    mixture, log pi + log softmax over the new items (sharpness s) against log(1 - pi) + log
    softmax over the trained ones (the fused model's own sharpness); and each new item at
    the fused score of the trained item its SASRec branch ranks next to it, shifted up by
    a share of the catalogue."""
    new = model.fusion.new_items
    warm = ~new
    scale = float(model.fusion.log_scale.exp())
    out: dict[str, Any] = {}

    def placed(a: float, b: float) -> Any:
        return lambda fused, _: torch.where(new, a * standardise(fused, over=new) + b, fused)

    def mixture(pi: float, sharp: float) -> Any:
        def score(fused: torch.Tensor, _: dict[str, torch.Tensor]) -> torch.Tensor:
            fresh = log_share(sharp * fused, new, pi)
            return torch.where(new, fresh, log_share(scale * fused, warm, 1 - pi))

        return score

    def transfer(shift: float) -> Any:
        def score(fused: torch.Tensor, branches: dict[str, torch.Tensor]) -> torch.Tensor:
            ref = branches["sasrec"]
            by_branch = ref[:, warm].sort(dim=1).values.contiguous()
            by_fused = fused[:, warm].sort(dim=1).values
            n = by_branch.shape[1]
            below = torch.searchsorted(by_branch, ref[:, new].contiguous()).float()
            at = (below + shift * n).clamp(0, n - 1).long()
            result = fused.clone()
            result[:, new] = by_fused.gather(1, at) + 1e-4 * standardise(ref)[:, new]
            return result

        return score

    for a in (0.5, 1.0):
        for b in (0.0, 0.5, 1.0, 1.5):
            out[f"new items at {a:g} z(over new) + {b:g}"] = figures(
                evaluator, Rescored(model, placed(a, b))
            )
    for pi in (0.05, 0.2):
        for sharp in (1.0, 4.0):
            out[f"mixture, new share {pi:g}, sharpness {sharp:g}"] = figures(
                evaluator, Rescored(model, mixture(pi, sharp))
            )
    for shift in (0.0, 0.01):
        out[f"placed by the SASRec branch's rank, shift {shift:g}"] = figures(
            evaluator, Rescored(model, transfer(shift))
        )
    return out


def text_popularity(known: torch.Tensor, counts: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
    """[n_items] log training count predicted from each item's text embedding by ridge
    regression (lambda 1, fixed) fitted on the trained items: for new items, what their text
    says about how many people will pick them (an LLM description knows a famous film)."""
    x = F.normalize(text.double(), dim=1)
    y = torch.log1p(counts.double())
    xk, mean = x[known], y[known].mean()
    eye = torch.eye(x.shape[1], dtype=x.dtype)
    weights = torch.linalg.solve(xk.T @ xk + eye, xk.T @ (y[known] - mean))
    return (x @ weights + mean).float()


@torch.inference_mode()
def new_item_popularity(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    """The text-predicted popularity of new items: among them, and placed among the trained
    items by a bonus or in one slot above the trained item at rank r."""
    cfg, dataset, model = load_run(run_dir, data_dir)
    split = make_split(dataset, cfg.data.scheme)
    evaluator = Evaluator(dataset, split, "valid")
    model.set_objective("fused")
    new = model.fusion.new_items
    counts = torch.as_tensor(interaction_counts(dataset, split.train))
    predicted = text_popularity(~new, counts, model.retriever.item_text)
    z = standardise(predicted, over=new)
    out: dict[str, Any] = {"fused": figures(evaluator, model)}
    out.update(new_item_ceiling(model, dataset, evaluator))
    out["text-predicted popularity, among new items only"] = figures(
        evaluator, Masked(Scorer(lambda batch: predicted.expand(len(batch.items), -1)), ~new)
    )
    for a in (0.5, 1.0):
        out[f"fused + {a:g} z(predicted popularity), among new items only"] = figures(
            evaluator, Masked(Adjusted(model, lambda batch, a=a: a * z * new), ~new)
        )
    for b in (0.0, 0.5, 1.0):
        out[f"new items at fused + 0.5 z(predicted popularity) + {b:g}"] = figures(
            evaluator, Adjusted(model, lambda batch, b=b: (0.5 * z + b) * new)
        )

    def slot(rank: int) -> Any:
        def score(fused: torch.Tensor, _: dict[str, torch.Tensor]) -> torch.Tensor:
            trained = fused.masked_fill(new, -1e9)
            at = trained.topk(rank, dim=1).values[:, -1:]
            best = (fused + 0.5 * z).masked_fill(~new, -1e9).argmax(dim=1, keepdim=True)
            return trained.scatter(1, best, at + 1e-3)

        return score

    for rank in (1, 3, 5, 10):
        out[f"best new item (fused + 0.5 z(predicted popularity)) in slot {rank}"] = figures(
            evaluator, Rescored(model, slot(rank))
        )
    return out


@torch.inference_mode()
def text_knn_branch(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    cfg, dataset, model = load_run(run_dir, data_dir)
    split = make_split(dataset, cfg.data.scheme)
    evaluator = Evaluator(dataset, split, "valid")
    knn = build_baseline("text-knn", dataset, split, root=data_dir)
    out = {
        f"text-kNN branch, weight {c:g}": figures(
            evaluator, Adjusted(model, lambda batch, c=c: c * standardise(knn.score(batch)))
        )
        for c in (0.0, 0.1, 0.2, 0.3, 0.5, 1.0)
    }
    # The trade-off frontier on rare items: a bonus d (plus c times the text-kNN z-score)
    # for candidates with 1-19 training interactions only.
    counts = torch.as_tensor(interaction_counts(dataset, split.train))
    tail = ((counts >= 1) & (counts < evaluator.group_spec.tail_below)).float()
    for c in (0.0, 0.25, 0.5):
        for d in (0.5, 0.75, 1.0, 1.25):
            out[f"tail-item bonus {d:g}, text-kNN weight {c:g}"] = figures(
                evaluator,
                Adjusted(
                    model,
                    lambda batch, c=c, d=d: (c * standardise(knn.score(batch)) + d) * tail,
                ),
            )
    # The same bonus scaled per user by the share of rare items (< 20 training interactions)
    # among their last 10, over 0.2 (at most 3 times): such users' targets are rare more
    # often (validation: 9% of users with none, 30% of those with 20% or more).
    below = (counts < evaluator.group_spec.tail_below).float()

    def rare_share(batch: Any) -> torch.Tensor:
        items = batch.items[:, -10:]
        real = items != PAD
        return (below[items.clamp(min=0)] * real).sum(1) / real.sum(1).clamp(min=1)

    for d in (0.5, 1.0, 1.5):
        out[f"tail-item bonus {d:g} x the user's rare share / 0.2"] = figures(
            evaluator,
            Adjusted(
                model, lambda batch, d=d: d * (rare_share(batch) / 0.2).clamp(max=3)[:, None] * tail
            ),
        )
    # Popularity buckets as a mixture: log p + log softmax within the bucket, head items
    # (>= 20) at sharpness sh of the fused score, rare and new ones at sharpness st of the
    # fused score plus c times text-kNN's z-score, p = 1 - pt - pn, pt, pn = 0.0005.
    head = counts >= evaluator.group_spec.tail_below
    new = counts == 0
    rare = ~head & ~new

    def buckets(sh: float, st: float, c: float, pt: float) -> Any:
        def score(batch: Any) -> torch.Tensor:
            fused = model.score(batch)
            text = st * (fused + c * standardise(knn.score(batch)))
            out = torch.where(
                rare, log_share(text, rare, pt), log_share(sh * fused, head, 1 - pt - 0.0005)
            )
            return torch.where(new, log_share(text, new, 0.0005), out) if bool(new.any()) else out

        return score

    for sh, st, c, pt in (
        (1.0, 10, 0.5, 0.01), (1.0, 10, 0.5, 0.03), (2.5, 5, 0.0, 0.01), (2.5, 5, 0.0, 0.03),
        (2.5, 10, 0.5, 0.03),
    ):  # fmt: skip
        out[f"bucket mixture, sh {sh:g}, st {st:g}, c {c:g}, pt {pt:g}"] = figures(
            evaluator, Scorer(buckets(sh, st, c, pt))
        )
    out.update(learned_reranker(model, knn, evaluator, counts))
    return out


RARE_COLUMN = 6  # of rerank_cases' features: after the five z-scores and log(1 + count)


@torch.inference_mode()
def rerank_cases(
    model: Any, knn: Any, evaluator: Evaluator, counts: torch.Tensor
) -> tuple[list[torch.Tensor], list[int]]:
    """Per validation user: features [candidates, 15] of the fused top 200 and text-kNN's top
    50 (the user's own items left out), and the target's row among them (-1: not there).
    The features: fused, SASRec, retriever, prior and text-kNN per-user z-scores; log(1 +
    count), rare (column RARE_COLUMN), new; the user's rare share among their last 10, and it
    x rare; text-kNN z x rare; fused z x rare; log(1 + rank) by fused and by text-kNN; log(1 +
    history length)."""
    tail_below = evaluator.group_spec.tail_below
    below = (counts < tail_below).float()
    rare_item = ((counts >= 1) & (counts < tail_below)).float()
    features, positions = [], []
    for rows, batch in evaluator.batches():
        branches = model.branch_scores(batch)
        fused = model.combine(branches)
        text = knn.score(batch)
        z = [standardise(fused), standardise(branches["sasrec"])]
        z += [standardise(branches["retriever"]), standardise(branches["prior"])]
        z.append(standardise(text))
        seen = torch.zeros_like(fused, dtype=torch.bool)
        r, c = torch.nonzero(batch.items != PAD, as_tuple=True)
        seen[r, batch.items[r, c]] = True
        fused_order = fused.masked_fill(seen, -1e9).argsort(1, descending=True)
        text_order = text.masked_fill(seen, -1e9).argsort(1, descending=True)
        fused_rank, text_rank = fused_order.argsort(1), text_order.argsort(1)
        last = batch.items[:, -10:]
        share = (below[last.clamp(min=0)] * (last != PAD)).sum(1) / (last != PAD).sum(1).clamp(
            min=1
        )
        length = torch.log1p((batch.items != PAD).sum(1).float())
        for i in range(len(fused)):
            pool = torch.unique(torch.cat([fused_order[i, :200], text_order[i, :50]]))
            pool = pool[~seen[i, pool]]
            rare = rare_item[pool]
            cols = [zs[i, pool] for zs in z] + [torch.log1p(counts[pool]), rare]
            cols += [(counts[pool] == 0).float(), share[i].expand(len(pool)), share[i] * rare]
            cols += [z[4][i, pool] * rare, z[0][i, pool] * rare]
            cols += [torch.log1p(fused_rank[i, pool].float())]
            cols += [torch.log1p(text_rank[i, pool].float()), length[i].expand(len(pool))]
            features.append(torch.stack(cols, 1))
            hit = torch.nonzero(pool == int(evaluator.targets[rows.start + i])).flatten()
            positions.append(int(hit[0]) if len(hit) else -1)
    return features, positions


def fit_logistic(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Weighted logistic regression (L2 1e-3 on the coefficients) by L-BFGS; returns
    [features + 1] coefficients for standardised features. Callable under inference mode:
    its inputs are copied out of it."""
    with torch.inference_mode(False), torch.enable_grad():
        x, y, weight = x.clone(), y.clone(), weight.clone()
        theta = torch.zeros(x.shape[1] + 1, requires_grad=True)
        optimiser = torch.optim.LBFGS([theta], max_iter=200, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            optimiser.zero_grad()
            logits = x @ theta[:-1] + theta[-1]
            loss = F.binary_cross_entropy_with_logits(logits, y, reduction="none") * weight
            loss = loss.sum() / weight.sum() + 1e-3 * theta[:-1].square().sum()
            loss.backward()
            return loss

        optimiser.step(closure)
        return theta.detach().clone()


def learned_reranker(
    model: Any, knn: Any, evaluator: Evaluator, counts: torch.Tensor
) -> dict[str, Any]:
    """A learned reranker of the fused model's and text-kNN's candidates: logistic regression
    on rerank_cases' features, fitted on four fifths of the validation users and scored on the
    fifth left out (5 folds; so every figure is on users the reranker was not fitted on),
    with the rare targets' weight w in the fit tracing the head/tail trade-off."""
    features, positions = rerank_cases(model, knn, evaluator, counts)
    n = len(features)
    fold = np.random.default_rng(0).integers(0, 5, n)
    out: dict[str, Any] = {}
    for w in (1.0, 2.0, 3.0, 10.0):
        ranks = np.full(n, 10**6)
        for f in range(5):
            train = [u for u in range(n) if fold[u] != f]
            x = torch.cat([features[u] for u in train])
            y = torch.zeros(len(x))
            starts = np.cumsum([0] + [len(features[u]) for u in train])
            y[[int(starts[k]) + positions[u] for k, u in enumerate(train) if positions[u] >= 0]] = 1
            mean, std = x.mean(0), x.std(0) + 1e-6
            weight = torch.where((y == 1) & (x[:, RARE_COLUMN] == 1), w, 1.0)
            theta = fit_logistic((x - mean) / std, y, weight)
            with torch.no_grad():
                for u in range(n):
                    if fold[u] != f or positions[u] < 0:
                        continue
                    s = ((features[u] - mean) / std) @ theta[:-1]
                    ranks[u] = int((s > s[positions[u]]).sum())
        name = f"learned reranker (5-fold over users), rare targets' weight {w:g}"
        out[name] = group_ndcg(evaluator, ranks)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir")
    args = parser.parse_args()
    cold_run = RUNS / "cold-items" / "ur4rec-s42"
    llm_run = RUNS / "cold-items" / "ur4rec-llm-s42"
    loo_run = RUNS / "leave-one-out" / "ur4rec-default-s42"
    runs = (cold_run, llm_run, loo_run)
    for run in runs:
        if not (run / "summary.json").is_file():
            raise SystemExit(f"{run} is missing: run benchmarks/cold_start.py first")
    document = {
        "cold-items": cold_items(cold_run, args.data_dir),
        "new-item popularity from text (template texts)": new_item_popularity(
            cold_run, args.data_dir
        ),
        "new-item popularity from text (LLM descriptions)": new_item_popularity(
            llm_run, args.data_dir
        ),
        "leave-one-out": text_knn_branch(loo_run, args.data_dir),
        "runs": {str(r.relative_to(ROOT)): run_provenance(r) for r in runs},
        "provenance": result_provenance(command_line(__file__)),
    }
    atomic_write_json(OUT, document)
    for split in (k for k in document if k not in ("runs", "provenance")):
        print(f"{split}, validation NDCG@10:")
        for name, cells in document[split].items():
            print(f"  {name:<48} " + "  ".join(f"{g} {v:.4f}" for g, v in cells.items()))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
