"""Evaluation protocols: which candidates the target is ranked against.

- ``full``: all items; the user's input history is masked (the target itself never is).
- ``sampled-with-history:N`` (``seed`` = N 99, the UR4Rec report's protocol): the target plus
  N negatives drawn uniformly from all items except the target, the history NOT excluded.
- ``sampled:N``: N uniform negatives, excluding the input history and the target.
- ``popsampled:N``: N negatives drawn with probability proportional to training popularity,
  excluding the input history and the target.

Negatives come from a fixed seed, drawn per block of users, so every model, epoch and batch
size sees the same candidate sets.
"""

from __future__ import annotations

import numpy as np
import torch

from ur4rec.errors import Ur4recError
from ur4rec.measures import Protocol

CANDIDATE_SEED = 20240607
BLOCK = 1024  # users per random block; fixed so candidates do not depend on batch size


def draw_negatives(
    protocol: Protocol,
    targets: np.ndarray,
    histories: list[np.ndarray],
    n_items: int,
    popularity: np.ndarray | None,
    stream: str,
) -> np.ndarray:
    """[n_users, N] negative item ids for a sampled protocol, without replacement.

    Sampling without replacement uses Gumbel top-k: the top-N of log(weight) + Gumbel noise,
    with excluded items at -inf. ``stream`` (e.g. 'test') separates the random streams.
    """
    if protocol.kind == "full":
        raise ValueError("the full protocol has no negatives")
    n = protocol.negatives
    if protocol.kind == "popsampled":
        if popularity is None:
            raise ValueError("popsampled needs item popularity")
        # Never-seen items get a tiny weight so they are drawn only when nothing else is left.
        log_weight = np.where(popularity > 0, np.log(np.maximum(popularity, 1)), -1e6)
    else:
        log_weight = np.zeros(n_items)
    stream_id = sum(ord(c) for c in stream + protocol.stream)
    out = np.empty((len(targets), n), dtype=np.int64)
    for start in range(0, len(targets), BLOCK):
        stop = min(start + BLOCK, len(targets))
        rng = np.random.default_rng([CANDIDATE_SEED, stream_id, start // BLOCK])
        keys = log_weight[None, :] + rng.gumbel(size=(stop - start, n_items))
        rows = np.arange(stop - start)
        if protocol.excludes_history:
            for row, history in enumerate(histories[start:stop]):
                keys[row, history] = -np.inf
        keys[rows, targets[start:stop]] = -np.inf
        available = np.isfinite(keys).sum(axis=1)
        if (available < n).any():
            worst = int(available.min())
            raise Ur4recError(
                f"protocol {protocol.name}: a user has only {worst} items left to draw "
                f"{n} negatives from; choose a smaller N"
            )
        top = torch.from_numpy(keys).topk(n, dim=1).indices.numpy()
        out[start:stop] = top
    return out
