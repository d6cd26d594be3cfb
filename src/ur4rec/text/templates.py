"""The offline ``template`` backend: deterministic texts from metadata and statistics."""

from __future__ import annotations

from collections import Counter

from ur4rec.data.raw import ItemInfo
from ur4rec.text.domain import MOVIES, Domain
from ur4rec.text.history import SeenItem, UserHistory

TEMPLATE_VERSION = "template-v1"


def display_title(info: ItemInfo) -> str:
    """'Usual Suspects, The' -> 'The Usual Suspects (1995)'."""
    title = info.title
    for article in ("The", "A", "An", "Les", "La", "Le", "Il", "Das", "Der", "Die", "El"):
        suffix = f", {article}"
        if title.endswith(suffix):
            title = f"{article} {title[: -len(suffix)]}"
            break
    return f"{title} ({info.year})" if info.year else title


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " and " + words[-1]


def item_text(info: ItemInfo, domain: Domain = MOVIES) -> str:
    """One item's text: for films title, year, genres and decade; in another domain the title,
    categories, description and attributes, with no film wording."""
    if not domain.is_movies:
        return generic_item_text(info)
    genres = _join([g.lower() for g in info.genres]) or "uncategorised"
    when = f" from {info.year}" if info.year else ""
    decade = f" A {info.year // 10 * 10}s film." if info.year else ""
    return f"{display_title(info)}: a {genres} film{when}.{decade}"


def _titles(items: list[SeenItem], limit: int) -> str:
    return "; ".join(display_title(s.info) for s in items[:limit])


def user_text(
    history: UserHistory, top: int = 5, titles: bool = True, domain: Domain = MOVIES
) -> str:
    """A multi-aspect preference summary: genres, decades, favourites, recent taste, dislikes.

    ``titles=False`` leaves out every title (genres, decades and trends only): a text naming
    training titles lets a model trained on earlier positions read later targets in it.
    """
    if not domain.is_movies:
        return generic_user_text(history, domain, top, titles)
    items = list(history.items)
    if not items:
        return "A new user with no rated movies yet."
    genres = Counter(g for s in items for g in s.info.genres)
    total = sum(genres.values()) or 1
    genre_part = ", ".join(
        f"{g.lower()} ({100 * n / total:.0f}%)" for g, n in genres.most_common(4)
    )
    decades = Counter(s.info.year // 10 * 10 for s in items if s.info.year)
    decade_part = _join([f"the {d}s" for d, _ in decades.most_common(2)])
    best = sorted(items, key=lambda s: (-s.rating, -s.timestamp))
    recent = sorted(items, key=lambda s: -s.timestamp)
    lines = [
        f"Watched {len(items)} movies, mostly {genre_part or 'of mixed genres'}.",
    ]
    if decade_part:
        lines.append(f"Favourite decades: {decade_part}.")
    if titles:
        lines.append(f"Rated highest: {_titles(best, top)}.")
        lines.append(f"Most recently watched: {_titles(recent, top)}.")
    else:
        top_genres = Counter(g for s in best[:top] for g in s.info.genres)
        if top_genres:
            lines.append(
                f"Rates highest: {_join([g.lower() for g, _ in top_genres.most_common(2)])}."
            )
    recent_genres = Counter(g for s in recent[:10] for g in s.info.genres)
    if recent_genres:
        lines.append(
            f"Lately drawn to {_join([g.lower() for g, _ in recent_genres.most_common(2)])}."
        )
    lowest = min(s.rating for s in items)
    if lowest < max(s.rating for s in items):
        low = [
            s for s in sorted(items, key=lambda s: (s.rating, -s.timestamp)) if s.rating == lowest
        ]
        if titles:
            lines.append(f"Liked less (rated {lowest:g}): {_titles(low, 3)}.")
        else:
            low_genres = Counter(g for s in low for g in s.info.genres)
            liked_less = _join([g.lower() for g, _ in low_genres.most_common(2)])
            lines.append(f"Rates {liked_less} lower.")
    return " ".join(lines)


def _number(value: float) -> str:
    return f"{value:g}" if abs(value) < 1e6 else f"{value:.3g}"


def generic_item_text(info: ItemInfo) -> str:
    """'Trail Runner: in footwear and running. A light shoe for long runs. Price 89.'"""
    parts = [display_title(info)]
    categories = _join([c.lower() for c in info.categories])
    head = f"{parts[0]}: in {categories}." if categories else f"{parts[0]}."
    lines = [head]
    if info.description:
        lines.append(info.description.rstrip(".") + ".")
    if info.attributes:
        lines.append(
            "; ".join(
                f"{name.replace('_', ' ').capitalize()} {_number(v)}" for name, v in info.attributes
            )
            + "."
        )
    return " ".join(lines)


def generic_user_text(
    history: UserHistory, domain: Domain, top: int = 5, titles: bool = True
) -> str:
    """The preference summary of :func:`user_text` in a domain's own words: categories,
    favourites (when ratings differ), recent taste, what is rated lower."""
    items = list(history.items)
    if not items:
        return f"A new user with no {domain.items} yet."
    cats = Counter(c for s in items for c in s.info.categories)
    total = sum(cats.values()) or 1
    cat_part = ", ".join(f"{c.lower()} ({100 * n / total:.0f}%)" for c, n in cats.most_common(4))
    lines = [f"Chose {len(items)} {domain.items}, mostly {cat_part or 'of mixed kinds'}."]
    rated = len({s.rating for s in items}) > 1
    best = sorted(items, key=lambda s: (-s.rating, -s.timestamp))
    recent = sorted(items, key=lambda s: -s.timestamp)
    if titles:
        if rated:
            lines.append(f"Rated highest: {_titles(best, top)}.")
        lines.append(f"Most recent: {_titles(recent, top)}.")
    elif rated:
        top_cats = Counter(c for s in best[:top] for c in s.info.categories)
        if top_cats:
            lines.append(
                f"Rates highest: {_join([c.lower() for c, _ in top_cats.most_common(2)])}."
            )
    recent_cats = Counter(c for s in recent[:10] for c in s.info.categories)
    if recent_cats:
        lines.append(
            f"Lately drawn to {_join([c.lower() for c, _ in recent_cats.most_common(2)])}."
        )
    if rated:
        lowest = min(s.rating for s in items)
        low = [
            s for s in sorted(items, key=lambda s: (s.rating, -s.timestamp)) if s.rating == lowest
        ]
        if titles:
            lines.append(f"Liked less (rated {lowest:g}): {_titles(low, 3)}.")
        else:
            low_cats = Counter(c for s in low for c in s.info.categories)
            if low_cats:
                lines.append(
                    f"Rates {_join([c.lower() for c, _ in low_cats.most_common(2)])} lower."
                )
    return " ".join(lines)
