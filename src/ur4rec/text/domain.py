"""What a dataset's items are, in words: 'movies' for MovieLens, 'products', 'books', ...

The templates and prompts take their nouns from it, so a shop's texts never call an item a
film. A dataset names its domain in its manifest (``ur4rec data import --domain``); the
MovieLens presets, whose manifests predate the key, are movies.
"""

from __future__ import annotations

from dataclasses import dataclass

from ur4rec.data.dataset import Dataset


@dataclass(frozen=True)
class Domain:
    items: str  # plural: 'movies', 'products'

    @property
    def item(self) -> str:
        """The singular, by the common English endings ('movies' -> 'movie')."""
        word = self.items
        if word.endswith("ies") and len(word) > 4 and word not in ("movies", "series"):
            return word[:-3] + "y"
        if word.endswith("s") and not word.endswith("ss") and word != "series":
            return word[:-1]
        return word

    @property
    def is_movies(self) -> bool:
        return self.items == "movies"


MOVIES = Domain("movies")


def domain_of(dataset: Dataset) -> Domain:
    words = dataset.manifest.get("domain") if isinstance(dataset.manifest, dict) else None
    return Domain(" ".join(str(words).split()).lower()) if words else MOVIES
