"""An OpenAI-compatible chat-completions client (OpenAI, vLLM, Ollama, llama.cpp, ...).

The API key comes only from an environment variable and is never written to a file, a log
or an error message. 429, 5xx, timeouts and unreadable answers are retried with exponential
backoff; other 4xx answers are not.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ur4rec.errors import Ur4recError


class LLMError(Ur4recError):
    """The endpoint failed for good (after retries, or with a non-retryable status)."""


class Refused(Exception):
    """The model answered, but with a refusal or nothing at all."""


@dataclass(frozen=True)
class Completion:
    text: str
    usage: dict[str, int] = field(default_factory=dict)


@dataclass
class ChatClient:
    base_url: str
    model: str
    temperature: float = 0.7
    max_tokens: int = 256
    api_key_env: str = "OPENAI_API_KEY"
    timeout: float = 60.0
    max_retries: int = 5
    backoff: float = 1.0  # seconds before the first retry; doubles each time
    max_backoff: float = 30.0

    def params(self) -> dict[str, object]:
        """What determines an answer (the cache key), without the key or the host."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def complete(self, prompt: str) -> Completion:
        body = json.dumps(
            {"messages": [{"role": "user", "content": prompt}], **self.params()}
        ).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        url = self.base_url.rstrip("/") + "/chat/completions"
        last_problem = ""
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                request = urllib.request.Request(url, data=body, headers=headers, method="POST")
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                return _parse(raw)
            except urllib.error.HTTPError as exc:
                if exc.code != 429 and exc.code < 500:
                    raise LLMError(f"{url} answered HTTP {exc.code}: {_reason(exc)}") from None
                last_problem = f"HTTP {exc.code}"
                retry_after = _retry_after(exc)
            except TimeoutError:
                last_problem = f"no answer within {self.timeout:g}s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    last_problem = f"no answer within {self.timeout:g}s"
                else:
                    last_problem = f"cannot reach {url}: {exc.reason}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                last_problem = f"unreadable answer ({exc.__class__.__name__}: {exc})"
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                delay = retry_after if retry_after is not None else delay * (0.5 + random.random())
                time.sleep(min(delay, self.max_backoff))
        raise LLMError(f"{url} failed after {self.max_retries + 1} attempts: {last_problem}")


def _parse(raw: bytes) -> Completion:
    data = json.loads(raw)
    message = data["choices"][0]["message"]
    usage = {k: int(v) for k, v in (data.get("usage") or {}).items() if isinstance(v, int)}
    if message.get("refusal"):
        raise Refused(str(message["refusal"]))
    text = (message.get("content") or "").strip()
    if not text:
        raise Refused("empty answer")
    return Completion(text, usage)


def _reason(exc: urllib.error.HTTPError) -> str:
    try:
        detail = exc.read(500).decode("utf-8", "replace").strip()
    except OSError:
        detail = ""
    return detail or str(exc.reason)


def _retry_after(exc: urllib.error.HTTPError) -> float | None:
    value = exc.headers.get("Retry-After") if exc.headers else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
