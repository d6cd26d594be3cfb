"""SASRec over content item embeddings, for catalogues with new items.

An item's vector is its text embedding through a trained projection plus an ID vector whose
length is bounded by ``model.id_residual`` times the content vector's (Pembek et al., "Let It
Go? Not Quite", RecSys 2025: a small trainable delta on content embeddings keeps their
structure). An item never seen in training has no ID vector, so it is its content vector:
ranked like the trained items whose text it shares, instead of by an untrained embedding.
"""

from __future__ import annotations

from typing import Any

import torch

from ur4rec.config import RunConfig
from ur4rec.models.base import ModelInputs, register
from ur4rec.models.sasrec import SASRec


@register
class ContentSASRec(SASRec):
    name = "sasrec-content"
    uses_text = True

    @classmethod
    def item_features_of(cls, inputs: ModelInputs) -> torch.Tensor | None:
        if inputs.saved is not None:
            return inputs.saved["item_text"]
        if inputs.texts is None:
            raise ValueError("sasrec-content needs item text embeddings")
        return inputs.texts.item

    def inference_inputs(self) -> dict[str, Any]:
        return {"item_text": self.item_features}

    def item_text_vectors(self) -> torch.Tensor | None:
        return self.item_features

    def summary(self, cfg: RunConfig) -> str:
        bound = cfg.model.id_residual
        ids = f"at most {bound:g} times as long as" if bound > 0 else "unbounded, added to"
        return (
            f"{super().summary(cfg)}; an item's embedding is its `{cfg.text.item_texts}` text "
            f"embedding ({cfg.text.encoder}) through a trained projection plus an ID vector "
            f"{ids} it (none for items never seen in training)"
        )

    def describe_config(self, cfg: RunConfig) -> str:
        return f"{self.summary(cfg)}."
