"""Item and user text generation with the ``template`` or ``openai`` backend.

LLM answers go into a content-addressed cache (hash of prompt, endpoint, model and parameters)
as they arrive, so a killed run resumes where it stopped and a rerun costs nothing. A refused,
empty or malformed answer, or an endpoint that keeps failing, gives the template text, flagged
as a fallback.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ur4rec.data.dataset import Dataset
from ur4rec.data.splits import make_split
from ur4rec.io import atomic_write_json
from ur4rec.text.domain import domain_of
from ur4rec.text.history import training_histories
from ur4rec.text.llm import ChatClient, LLMError, Refused
from ur4rec.text.prompts import item_prompt, prompt_version, user_prompt
from ur4rec.text.templates import TEMPLATE_VERSION, item_text, user_text

KINDS = ("items", "users")


@dataclass(frozen=True)
class TextJob:
    raw_id: str
    prompt: str
    fallback: str  # the template text


@dataclass
class GenerationResult:
    texts: dict[str, str]
    status: dict[str, str]  # raw id -> llm | cached | template | fallback: <reason>
    usage: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        return dict(Counter(s.split(":")[0] for s in self.status.values()))


def build_jobs(dataset: Dataset, kind: str, scheme: str = "leave-one-out") -> list[TextJob]:
    """One job per item or user; user jobs see only the split's training part."""
    if kind not in ("items", "users"):
        raise ValueError(f"unknown text kind {kind!r}; use items or users")
    domain = domain_of(dataset)
    if kind == "items":
        return [
            TextJob(raw, item_prompt(info, domain), item_text(info, domain))
            for raw, info in zip(dataset.item_ids, dataset.item_info, strict=True)
        ]
    if kind == "users":
        histories = training_histories(dataset, make_split(dataset, scheme))
        return [
            TextJob(h.raw_user_id, user_prompt(h, domain), user_text(h, domain=domain))
            for h in histories
        ]
    raise ValueError(f"unknown text kind {kind!r}; use items or users")


class ResponseCache:
    """One JSON file per answer, named by the hash of what determines it."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)

    @staticmethod
    def key(prompt: str, params: dict[str, Any]) -> str:
        blob = json.dumps({"prompt": prompt, **params}, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

    def _path(self, key: str) -> Path:
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict[str, Any] | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, OSError):
            return None  # a damaged entry is simply asked again

    def put(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self._path(key), record)


def generate(
    jobs: list[TextJob],
    client: ChatClient | None,
    cache: ResponseCache | None = None,
    concurrency: int = 4,
    quiet: bool = False,
) -> GenerationResult:
    """Template texts when ``client`` is None, else LLM texts with cache and fallbacks."""
    if client is None:
        texts = {job.raw_id: job.fallback for job in jobs}
        return GenerationResult(texts, dict.fromkeys(texts, "template"))
    if cache is None:
        raise ValueError("the openai backend needs a response cache")
    params = client.cache_params()
    texts: dict[str, str] = {}
    status: dict[str, str] = {}
    usage: Counter[str] = Counter()
    todo: list[tuple[TextJob, str]] = []
    for job in jobs:
        key = ResponseCache.key(job.prompt, params)
        record = cache.get(key)
        if record is None:
            todo.append((job, key))
        else:
            _apply(job, record, texts, status, cached=True)

    def ask(job: TextJob, key: str) -> dict[str, Any] | None:
        try:
            answer = client.complete(job.prompt)
            record = {"status": "ok", "text": answer.text, "usage": answer.usage}
        except Refused as exc:
            record = {"status": "refused", "reason": str(exc)[:200], "usage": {}}
        except LLMError as exc:
            return {"status": "failed", "reason": str(exc)}  # not cached: retried next run
        record["time"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        cache.put(key, record)
        return record

    bar = tqdm(total=len(todo), desc="generating", disable=quiet or not todo, file=sys.stderr)
    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        futures = {pool.submit(ask, job, key): job for job, key in todo}
        for future in as_completed(futures):
            job = futures[future]
            record = future.result()
            usage.update(record.get("usage") or {})
            _apply(job, record, texts, status, cached=False)
            bar.update()
    bar.close()
    failed = [
        status[job.raw_id] for job, _ in todo if status[job.raw_id].startswith("fallback: failed")
    ]
    if todo and len(failed) == len(todo) == len(jobs):
        # A dead endpoint or a wrong key: say so instead of writing template texts as LLM ones.
        raise LLMError(f"every request failed; the first: {failed[0].split(': ', 2)[-1]}")
    ordered = {job.raw_id: texts[job.raw_id] for job in jobs}
    return GenerationResult(ordered, status, dict(usage))


def _apply(
    job: TextJob,
    record: dict[str, Any],
    texts: dict[str, str],
    status: dict[str, str],
    cached: bool,
) -> None:
    if record.get("status") == "ok":
        texts[job.raw_id] = record["text"]
        status[job.raw_id] = "cached" if cached else "llm"
    else:
        texts[job.raw_id] = job.fallback
        status[job.raw_id] = f"fallback: {record.get('status')}: {record.get('reason', '')}"


def manifest_for(
    dataset: Dataset, kind: str, scheme: str, client: ChatClient | None, result: GenerationResult
) -> dict[str, Any]:
    fallbacks = {k: v for k, v in result.status.items() if v.startswith("fallback")}
    return {
        "dataset": dataset.name,
        "data_hash": dataset.content_hash,
        "kind": kind,
        "backend": "openai" if client else "template",
        "model": client.model if client else TEMPLATE_VERSION,
        "params": client.params() if client else {},
        "prompt_version": prompt_version(kind, domain_of(dataset)) if client else TEMPLATE_VERSION,
        "split": scheme if kind == "users" else None,
        "history": "training part only" if kind == "users" else None,
        "status_counts": result.counts(),
        "fallback_ids": sorted(fallbacks, key=lambda s: (len(s), s)),
        "usage": result.usage,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
