"""The models that ship with ur4rec; importing this module registers them."""

from ur4rec.models import baselines, content, gru4rec, sasrec, text_knn, ur4rec  # noqa: F401
