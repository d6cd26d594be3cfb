"""Models: SASRec, the text retriever, memory, fusion and the composed UR4Rec."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

from ur4rec.config import RunConfig
from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import Prefixes
from ur4rec.models.sasrec import SASRec

if TYPE_CHECKING:
    from ur4rec.train.features import TextFeatures


def build_model(
    cfg: RunConfig,
    dataset: Dataset,
    texts: TextFeatures | None = None,
    n_windows: int = 0,
    train: Prefixes | None = None,
) -> nn.Module:
    if cfg.model.name == "sasrec":
        return SASRec(dataset.n_items, cfg.data.max_len, cfg.model)
    if cfg.model.name == "ur4rec":
        from ur4rec.models.ur4rec import UR4Rec

        if texts is None:
            raise ValueError("UR4Rec needs text features")
        encoder = None
        if cfg.text.trainable_layers > 0:
            from ur4rec.text.encoder import TrainableTextEncoder

            encoder = TrainableTextEncoder(cfg.text.encoder, cfg.text.trainable_layers)
        prior = None
        if cfg.fusion.prior == "ease":
            from ur4rec.models.ease import ease_weights

            if train is None:
                raise ValueError("fusion.prior needs the training part to fit EASE on")
            prior = ease_weights(dataset, train, cfg.fusion.prior_l2)
        return UR4Rec(
            dataset.n_users, dataset.n_items, cfg.data.max_len, cfg.model, cfg.retriever,
            cfg.fusion, cfg.memory, texts.item, texts.user, n_windows,
            text_encoder=encoder, user_texts=texts.user_texts, prior=prior,
        )  # fmt: skip
    raise ValueError(f"unknown model {cfg.model.name!r}")


__all__ = ["SASRec", "build_model"]
