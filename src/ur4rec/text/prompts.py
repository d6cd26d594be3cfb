"""Versioned prompt files (``prompts/<kind>-v<N>.md``) filled from metadata and training
histories only."""

from __future__ import annotations

from importlib import resources
from string import Template

from ur4rec.data.raw import ItemInfo
from ur4rec.errors import Ur4recError
from ur4rec.text.history import UserHistory
from ur4rec.text.templates import display_title

PROMPT_VERSIONS = {"items": "item-v1", "users": "user-v1"}
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


def item_prompt(info: ItemInfo, version: str = PROMPT_VERSIONS["items"]) -> str:
    genres = ", ".join(info.genres) or "unknown"
    return load_prompt(version).substitute(title=display_title(info), genres=genres).strip()


def user_prompt(history: UserHistory, version: str = PROMPT_VERSIONS["users"]) -> str:
    lines = [
        f"- {display_title(s.info)} [{', '.join(s.info.genres) or 'unknown'}]: rated {s.rating:g}"
        for s in history.items[-MAX_HISTORY_LINES:]
    ]
    return load_prompt(version).substitute(history="\n".join(lines) or "(none)").strip()
