"""A frozen copy of a module's item vectors, for serving: computed once, not per request.

``item_vectors()`` of SASRec and the retriever costs a projection of every item's features;
a served model's weights never change, so ``cache_item_vectors()`` keeps the result. Switching
to training mode or loading weights drops the copy, so it can never go stale.
"""

from __future__ import annotations

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
