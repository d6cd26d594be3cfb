"""The models that ship with ur4rec; importing this module registers them."""

from ur4rec.models import baselines, gru4rec, sasrec, ur4rec  # noqa: F401
