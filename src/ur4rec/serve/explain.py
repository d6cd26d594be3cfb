"""Explanations in words: one sentence per recommendation, written by an LLM from the evidence
the model already gives.

The evidence is what :class:`Recommender` explains with: the history item nearest to the
recommended one in the model's item space, the preference sentence nearest to it, and the
branch scores. The LLM (any OpenAI-compatible endpoint, ``text/llm.py``; the key from the
environment only) turns it into a sentence; answers are cached by prompt and endpoint like the
generated texts, so a repeated request asks nothing. When the backend fails or refuses, the
recommendation keeps its evidence and the answer says why in ``notes``: an explanation is
never worth a failed request.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ur4rec.text.domain import MOVIES, Domain
from ur4rec.text.generate import ResponseCache
from ur4rec.text.llm import ChatClient, LLMError, Refused

PROMPT_VERSION = "explain-v1"
PROMPT = """You explain {kind} recommendations to a user in one short sentence.
Use only the evidence below; do not invent facts about the {item} or the user.

Recommended: {recommended}
{evidence}

Write one sentence (at most 30 words) saying why this was recommended."""


def evidence_lines(rec: dict[str, Any]) -> list[str]:
    """The model's own evidence for one recommendation (a ``Recommendation`` as JSON)."""
    lines = []
    why = rec.get("explanation") or {}
    near = why.get("history_item")
    if near:
        lines.append(
            f"Nearest item in the user's history: {near['title']} "
            f"(similarity {why.get('history_similarity', 0):.2f})"
        )
    if why.get("preference_sentence"):
        lines.append(
            f'Matching sentence of the user\'s preferences: "{why["preference_sentence"]}" '
            f"(similarity {why.get('preference_similarity', 0):.2f})"
        )
    scores = rec.get("scores") or {}
    if scores:
        parts = ", ".join(f"{name} {value:.2f}" for name, value in scores.items())
        lines.append(f"Branch scores: {parts}")
    return lines


def explanation_prompt(rec: dict[str, Any], domain: Domain = MOVIES) -> str:
    return PROMPT.format(
        recommended=rec["title"],
        evidence="\n".join(evidence_lines(rec)),
        kind=domain.item,
        item=domain.item,
    ).strip()


class LLMExplainer:
    """Adds ``explanation.sentence`` to each recommendation of a result (as JSON)."""

    def __init__(self, client: ChatClient, cache: ResponseCache, concurrency: int = 4) -> None:
        self.client, self.cache, self.concurrency = client, cache, max(1, concurrency)
        self.domain = MOVIES  # the served dataset's (serve sets it)

    def _sentence(self, prompt: str) -> str:
        params = {**self.client.cache_params(), "prompt_version": PROMPT_VERSION}
        key = ResponseCache.key(prompt, params)
        record = self.cache.get(key)
        if record is not None and isinstance(record.get("text"), str):
            return record["text"]
        text = self.client.complete(prompt).text.strip()
        text = " ".join(text.split())  # one line
        if not text:
            raise Refused("an empty answer")
        self.cache.put(key, {"text": text, **params})
        return text

    def explain(self, result: dict[str, Any]) -> dict[str, Any]:
        """``result``: a :class:`Recommendations` as JSON, explained (evidence present).
        Returns it with sentences added where the backend answered, and a note otherwise."""
        recs = [r for r in result.get("items", []) if r.get("explanation") is not None]
        if not recs:
            return result
        prompts = [explanation_prompt(r, self.domain) for r in recs]
        with ThreadPoolExecutor(min(self.concurrency, len(prompts))) as pool:
            answers = list(pool.map(self._safe, prompts))
        failures = [a for a in answers if isinstance(a, Exception)]
        for rec, answer in zip(recs, answers, strict=True):
            if isinstance(answer, str):
                rec["explanation"]["sentence"] = answer
        if failures:
            result.setdefault("notes", []).append(
                f"{len(failures)} of {len(recs)} explanations could not be written by the LLM "
                f"({failures[0]}); their evidence is given instead"
            )
        return result

    def _safe(self, prompt: str) -> str | Exception:
        try:
            return self._sentence(prompt)
        except (LLMError, Refused) as exc:
            return exc


def explainer_from_spec(spec: dict[str, Any] | None) -> LLMExplainer | None:
    """An explainer from plain settings (what ``ur4rec serve`` hands each worker): base_url,
    model, api_key_env, timeout and cache (a folder). None without a model."""
    if not spec or not spec.get("model"):
        return None
    client = ChatClient(
        base_url=spec["base_url"], model=spec["model"], temperature=0.2, max_tokens=80,
        api_key_env=spec.get("api_key_env", "OPENAI_API_KEY"),
        timeout=float(spec.get("timeout", 20.0)), max_retries=1,
    )  # fmt: skip
    from pathlib import Path

    return LLMExplainer(client, ResponseCache(Path(spec["cache"])))
