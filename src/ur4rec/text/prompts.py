"""Versioned prompt files (``prompts/<kind>-v<N>.md``) filled from metadata and training
histories only."""

from __future__ import annotations

from importlib import resources
from string import Template

from ur4rec.data.raw import ItemInfo
from ur4rec.errors import Ur4recError
from ur4rec.text.domain import MOVIES, Domain
from ur4rec.text.history import UserHistory
from ur4rec.text.templates import display_title

PROMPT_VERSIONS = {"items": "item-v1", "users": "user-v1"}
# Any domain but films: the nouns come from the dataset's manifest.
GENERIC_PROMPT_VERSIONS = {"items": "item-generic-v1", "users": "user-generic-v1"}
MAX_HISTORY_LINES = 50  # the most recent training items shown to the LLM


def load_prompt(name: str) -> Template:
    try:
        text = (
            resources.files("ur4rec.text")
            .joinpath("prompts")
            .joinpath(f"{name}.md")
            .read_text("utf-8")
        )
    except FileNotFoundError:
        raise Ur4recError(f"no prompt file named {name!r}") from None
    return Template(text)


def prompt_version(kind: str, domain: Domain = MOVIES) -> str:
    return (PROMPT_VERSIONS if domain.is_movies else GENERIC_PROMPT_VERSIONS)[kind]


def item_prompt(info: ItemInfo, domain: Domain = MOVIES, version: str | None = None) -> str:
    genres = ", ".join(info.genres) or "unknown"
    template = load_prompt(version or prompt_version("items", domain))
    return template.substitute(
        title=display_title(info), genres=genres, item=domain.item, items=domain.items,
        description=info.description or "(none)",
    ).strip()  # fmt: skip


def user_prompt(history: UserHistory, domain: Domain = MOVIES, version: str | None = None) -> str:
    lines = [
        f"- {display_title(s.info)} [{', '.join(s.info.genres) or 'unknown'}]: rated {s.rating:g}"
        for s in history.items[-MAX_HISTORY_LINES:]
    ]
    template = load_prompt(version or prompt_version("users", domain))
    return template.substitute(
        history="\n".join(lines) or "(none)", item=domain.item, items=domain.items
    ).strip()
