"""The models that ship with ur4rec; importing this module registers them."""

from ur4rec.models import (  # noqa: F401
    baselines,
    content,
    cooccurrence,
    gru4rec,
    sasrec,
    text_knn,
    ur4rec,
)
