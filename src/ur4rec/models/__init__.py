"""Models: SASRec now; the retriever, memory, fusion and the composed UR4Rec later."""

from __future__ import annotations

from torch import nn

from ur4rec.config import RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.models.sasrec import SASRec


def build_model(cfg: RunConfig, dataset: Dataset) -> nn.Module:
    if cfg.model.name == "sasrec":
        return SASRec(dataset.n_items, cfg.data.max_len, cfg.model)
    raise ValueError(f"unknown model {cfg.model.name!r}")


__all__ = ["SASRec", "build_model"]
