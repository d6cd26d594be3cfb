"""ur4rec: UR4Rec made real, a sequential recommender measured honestly."""

from ur4rec.errors import Ur4recError

__version__ = "0.1.0"

__all__ = ["Ur4recError", "__version__"]
