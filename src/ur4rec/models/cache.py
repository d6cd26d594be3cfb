"""A frozen copy of a module's item vectors, for serving: computed once, not per request.

``item_vectors()`` of SASRec and the retriever costs a projection of every item's features;
a served model's weights never change, so ``cache_item_vectors()`` keeps the result. Switching
to training mode, loading weights or moving the module drops the copy, so it can never go
stale.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn


class ItemVectorCache(nn.Module):
    _item_cache: torch.Tensor | None = None

    def item_vectors(self) -> torch.Tensor:
        raise NotImplementedError

    def cache_item_vectors(self) -> torch.Tensor:
        self._item_cache = None
        with torch.no_grad():
            self._item_cache = self.item_vectors().detach()
        return self._item_cache

    def clear_item_cache(self) -> None:
        self._item_cache = None

    def train(self, mode: bool = True) -> ItemVectorCache:
        self._item_cache = None
        return super().train(mode)

    def _load_from_state_dict(self, *args, **kwargs) -> None:  # type: ignore[no-untyped-def]
        self._item_cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        self._item_cache = None  # moved or cast (.to(device)): the copy would be left behind
        return super()._apply(fn, recurse)


@contextmanager
def frozen_item_vectors(model: object) -> Iterator[None]:
    """Inside: every item-vector module of ``model`` keeps its vectors (computed once, as
    serving does); after it, copies it made are dropped again (weights may change next)."""
    modules = (
        [m for m in model.modules() if isinstance(m, ItemVectorCache)]
        if isinstance(model, nn.Module)
        else []
    )
    made = [m for m in modules if m._item_cache is None]
    for module in made:
        module.cache_item_vectors()
    try:
        yield
    finally:
        for module in made:
            module.clear_item_cache()
