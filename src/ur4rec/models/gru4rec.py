"""GRU4Rec (Hidasi et al., 2016), trained like SASRec here: a GRU over the user's recent items,
every position predicting the next item with a softmax over the whole catalogue (as in RecBole
and in Hidasi & Karatzoglou's 2018 follow-up, rather than the original session-parallel
mini-batches).

Histories arrive left-padded; the GRU must not read the padding (its gates would move the
state even on zero inputs), so each history is packed to its real length and the outputs are
put back in place: the same items give the same user vector whatever the padding.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from ur4rec.config import ModelConfig, RunConfig
from ur4rec.data.splits import PAD
from ur4rec.models.base import register
from ur4rec.models.sequential import SequentialModel


@register
class GRU4Rec(SequentialModel):
    """Item embeddings -> dropout -> GRU (``model.layers`` layers of ``model.hidden``) -> a
    linear map back to the embedding space -> dot product with the item vectors."""

    name = "gru4rec"

    def __init__(
        self,
        n_items: int,
        max_len: int,
        cfg: ModelConfig,
        item_features: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self._item_embedding(n_items, max_len, cfg)
        self._item_features(item_features)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(cfg.hidden, cfg.hidden, cfg.layers, batch_first=True, bias=False)
        self.out = nn.Linear(cfg.hidden, cfg.hidden)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        self.item_emb.weight.data[n_items].zero_()
        for name, weight in self.gru.named_parameters():
            (nn.init.orthogonal_ if "weight_hh" in name else nn.init.xavier_uniform_)(weight)

    def encode(self, items: torch.Tensor) -> torch.Tensor:
        valid = items != PAD
        length = items.shape[1]
        lengths = valid.sum(dim=1)
        # Real items first (right padding) for packing; `order` maps back.
        order = torch.argsort((~valid).to(torch.int8), dim=1, stable=True)
        right = items.gather(1, order)
        x = self.item_vectors()[right.clamp(min=0)] * (right != PAD)[..., None]
        packed = pack_padded_sequence(
            self.emb_dropout(x), lengths.clamp(min=1).cpu(), batch_first=True,
            enforce_sorted=False,
        )  # fmt: skip
        out, _ = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=length)
        out = self.out(out)
        back = torch.argsort(order, dim=1)  # left position -> its place in `right`
        out = out.gather(1, back[..., None].expand(-1, -1, out.shape[-1]))
        return out * valid[..., None]

    def summary(self, cfg: RunConfig) -> str:
        m = cfg.model
        return (
            f"GRU4Rec, a recurrent network ({m.layers} GRU layer(s), hidden size {m.hidden}) "
            f"over the user's last {cfg.data.max_len} items, scoring every item by a dot "
            "product with its embedding"
        )
