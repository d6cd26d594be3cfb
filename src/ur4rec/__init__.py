"""ur4rec: UR4Rec made real, a sequential recommender measured honestly.

The public API, beside the CLI (which is a thin layer over it)::

    import ur4rec

    cfg = ur4rec.load_config("configs/sasrec-ml-100k.yaml", ["train.epochs=5"])
    run_dir = ur4rec.train_run(cfg, "runs/my-sasrec")
    print(ur4rec.evaluate_run(run_dir, protocol="full", part="test")["ndcg@10"])
    rec = ur4rec.Recommender(run_dir)
    rec.recommend_user("1", k=10)
    rec.recommend_history(["50", "172"], k=10, preference_text="Loves space operas.")

Names are imported when first used, so ``import ur4rec`` stays light. (``train_run`` rather
than ``train``: ``ur4rec.train`` is the training package.)
"""

from __future__ import annotations

import importlib
from typing import Any

from ur4rec.errors import Ur4recError
from ur4rec.version import __version__

# public name -> (module, name there)
_EXPORTS = {
    "load_config": ("ur4rec.config", "load_config"),
    "RunConfig": ("ur4rec.config", "RunConfig"),
    "train_run": ("ur4rec.train.run", "train"),
    "resume_run": ("ur4rec.train.run", "resume"),
    "evaluate_run": ("ur4rec.train.run", "evaluate"),
    "load_run": ("ur4rec.runs.load", "load_run"),
    "Recommender": ("ur4rec.serve.recommender", "Recommender"),
    "RecModel": ("ur4rec.models.base", "RecModel"),
    "register": ("ur4rec.models.base", "register"),
    "model_names": ("ur4rec.models.base", "model_names"),
    "prepare_dataset": ("ur4rec.data.prepare", "prepare_dataset"),
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        module, attribute = _EXPORTS[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'ur4rec' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*_EXPORTS, "Ur4recError", "__version__"])


__all__ = ["Ur4recError", "__version__", *_EXPORTS]
