"""The models that ship with ur4rec; importing this module registers them."""

from ur4rec.models import baselines, sasrec, ur4rec  # noqa: F401
