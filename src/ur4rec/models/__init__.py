"""Models behind one interface (models/base.py): SASRec, UR4Rec (SASRec + the text retriever,
memory, fusion), popularity and EASE."""

from __future__ import annotations

from ur4rec.models.base import (
    ModelInputs,
    RecModel,
    check_config,
    model_class,
    model_names,
    ranks_seen_items_last,
    register,
)


def build_model(inputs: ModelInputs) -> RecModel:
    """A fresh model of the config's ``model.name`` (initialised from the global torch seed)."""
    model = model_class(inputs.cfg.model.name).build(inputs)
    model.seen_items_last = ranks_seen_items_last(
        inputs.cfg.model.seen_items, inputs.dataset, inputs.train
    )
    return model


__all__ = [
    "ModelInputs",
    "RecModel",
    "build_model",
    "check_config",
    "model_class",
    "model_names",
    "ranks_seen_items_last",
    "register",
]
