"""Item indexes for serving: which items to score exactly for a user.

``exact`` scores every item (the default: on catalogues of thousands it is a millisecond).
``ann`` keeps a faiss inverted-file index (IVF, flat vectors, inner product) over the item
vectors of each dot-product branch of the model: a request looks up each branch's top
candidates for the user's vector, and the model then scores their union exactly (fusion
included), so only the candidate set is approximate. ``recall@k`` against exact serving is
measured by benchmarks/ann_serving.py.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from ur4rec.errors import Ur4recError

INDEX_KINDS = ("exact", "ann")
TRAIN_SAMPLE_PER_LIST = 64  # k-means training points per inverted list


def _faiss() -> Any:
    try:
        import faiss
    except ImportError:  # pragma: no cover - faiss-cpu is a dependency
        raise Ur4recError("--index ann needs faiss: pip install faiss-cpu") from None
    return faiss


class ANNIndex:
    """An IVF-Flat inner-product index over ``vectors`` [n, d]: ``lists`` inverted lists
    (default about 4 sqrt(n)), ``probe`` of them searched per query."""

    def __init__(
        self,
        vectors: torch.Tensor,
        lists: int | None = None,
        probe: int | None = None,
        seed: int = 0,
        threads: int | None = None,
    ) -> None:
        faiss = _faiss()
        if threads is not None:
            faiss.omp_set_num_threads(threads)
        data = np.ascontiguousarray(vectors.detach().float().numpy())
        n, dim = data.shape
        # k-means wants at least 39 points per list; fewer items than that: one list.
        self.lists = lists or max(1, min(n // 39, int(4 * math.sqrt(n))))
        self.probe = min(self.lists, probe or max(1, self.lists // 32))
        self._quantizer = faiss.IndexFlatIP(dim)  # kept: faiss does not own it from Python
        if self.lists == 1:  # nothing to partition: a flat (exact) index
            self.index = self._quantizer
        else:
            self.index = faiss.IndexIVFFlat(
                self._quantizer, dim, self.lists, faiss.METRIC_INNER_PRODUCT
            )
            self.index.cp.seed = seed
            rng = np.random.default_rng(seed)
            sample = min(n, self.lists * TRAIN_SAMPLE_PER_LIST)
            train = data if sample == n else data[np.sort(rng.choice(n, sample, replace=False))]
            self.index.train(train)
            self.index.nprobe = self.probe
        self.index.add(data)

    @property
    def size(self) -> int:
        return int(self.index.ntotal)

    @property
    def memory_bytes(self) -> int:
        """The vectors and ids in the lists plus the centroids."""
        d = self.index.d
        return self.size * (4 * d + 8) + self.lists * 4 * d

    def add(self, vectors: torch.Tensor) -> None:
        """Items appended to the catalogue (their ids continue from ``size``)."""
        self.index.add(np.ascontiguousarray(vectors.detach().float().numpy()))

    def search(self, queries: torch.Tensor, k: int) -> torch.Tensor:
        """[B, k] item ids, best first; -1 where fewer than k were found."""
        k = max(1, min(k, self.size))
        _, ids = self.index.search(np.ascontiguousarray(queries.detach().float().numpy()), k)
        return torch.from_numpy(ids)
