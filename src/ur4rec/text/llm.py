"""An OpenAI-compatible chat-completions client (OpenAI, vLLM, Ollama, llama.cpp, ...).

The API key comes only from an environment variable and is never written to a file, a log
or an error message (an error body that echoes it is redacted). Redirects are not followed:
they would carry the key to another host. 429, 5xx, timeouts and unreadable or wrongly shaped
answers are retried with exponential backoff; other 4xx answers are not.
"""

from __future__ import annotations

import json
import os
import random
import time
import urllib.error
import urllib.parse
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
        """What determines an answer, without the key or the host (for manifests)."""
        return {"model": self.model, "temperature": self.temperature, "max_tokens": self.max_tokens}

    def cache_params(self) -> dict[str, object]:
        """The cache key's parameters: two servers may serve different models under one name,
        so the endpoint is part of the key (without any credentials in the URL)."""
        parts = urllib.parse.urlsplit(self.base_url.rstrip("/"))
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")
        endpoint = urllib.parse.urlunsplit((parts.scheme, host, parts.path, "", ""))
        return {**self.params(), "endpoint": endpoint}

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
                with _OPENER.open(request, timeout=self.timeout) as response:
                    raw = response.read()
                return _parse(raw)
            except urllib.error.HTTPError as exc:
                if 300 <= exc.code < 400:
                    where = exc.headers.get("Location", "?") if exc.headers else "?"
                    target = urllib.parse.urlsplit(where).netloc or where
                    raise LLMError(
                        f"{url} answered HTTP {exc.code}, a redirect to {_redact(target, key)!r}; "
                        "ur4rec does not follow redirects, since the request carries the API "
                        "key: set --base-url to the final address"
                    ) from None
                if exc.code != 429 and exc.code < 500:
                    reason = _redact(_reason(exc), key)
                    raise LLMError(f"{url} answered HTTP {exc.code}: {reason}") from None
                last_problem = f"HTTP {exc.code}"
                retry_after = _retry_after(exc)
            except TimeoutError:
                last_problem = f"no answer within {self.timeout:g}s"
            except urllib.error.URLError as exc:
                if isinstance(exc.reason, TimeoutError):
                    last_problem = f"no answer within {self.timeout:g}s"
                else:
                    last_problem = f"cannot reach {url}: {exc.reason}"
            except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
                last_problem = f"unreadable answer ({exc.__class__.__name__}: {exc})"
            if attempt < self.max_retries:
                delay = min(self.max_backoff, self.backoff * 2**attempt)
                delay = retry_after if retry_after is not None else delay * (0.5 + random.random())
                time.sleep(min(delay, self.max_backoff))
        raise LLMError(
            f"{url} failed after {self.max_retries + 1} attempts: {_redact(last_problem, key)}"
        )


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turns every redirect into an HTTPError: a redirect would carry the Authorization header
    to whatever host it names (or from https to http)."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[override]
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _redact(text: str, key: str | None) -> str:
    return text.replace(key, "[redacted]") if key else text


def _parse(raw: bytes) -> Completion:
    """The answer's text and usage; ValueError for anything not shaped like a chat answer."""
    data = json.loads(raw)
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise ValueError(f"no 'choices' list in the answer: {raw[:120]!r}")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise ValueError("the first choice has no 'message' object")
    content, refusal = message.get("content"), message.get("refusal")
    if content is not None and not isinstance(content, str):
        raise ValueError(f"'content' is {type(content).__name__}, not text")
    usage_in = data.get("usage") or {}
    if not isinstance(usage_in, dict):
        raise ValueError(f"'usage' is {type(usage_in).__name__}, not an object")
    usage = {
        str(k): int(v)
        for k, v in usage_in.items()
        if isinstance(v, int) and not isinstance(v, bool)
    }
    if refusal:
        raise Refused(str(refusal))
    text = (content or "").strip()
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
