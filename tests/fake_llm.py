"""A chat-completions server on 127.0.0.1 whose behaviour each test scripts."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

# (status, body, delay seconds, extra headers)
Reply = tuple[int, bytes, float, dict[str, str]]


def ok(text: str, tokens: int = 10) -> Reply:
    body = {
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": tokens, "completion_tokens": tokens, "total_tokens": 2 * tokens},
    }
    return 200, json.dumps(body).encode(), 0.0, {}


def refusal(reason: str = "I can't help with that.") -> Reply:
    body = {"choices": [{"message": {"role": "assistant", "content": None, "refusal": reason}}]}
    return 200, json.dumps(body).encode(), 0.0, {}


def status(code: int, headers: dict[str, str] | None = None) -> Reply:
    return code, b'{"error": {"message": "nope"}}', 0.0, headers or {}


@dataclass
class FakeLLM:
    """``script(prompt, attempt)`` decides each reply; attempts count per prompt from 0."""

    script: Callable[[str, int], Reply]
    attempts: Counter = field(default_factory=Counter)
    auth_headers: list[str | None] = field(default_factory=list)
    requests: int = 0

    def __post_init__(self) -> None:
        fake = self
        lock = threading.Lock()

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                payload = json.loads(self.rfile.read(length))
                prompt = payload["messages"][-1]["content"]
                with lock:
                    attempt = fake.attempts[prompt]
                    fake.attempts[prompt] += 1
                    fake.requests += 1
                    fake.auth_headers.append(self.headers.get("Authorization"))
                code, body, delay, headers = fake.script(prompt, attempt)
                time.sleep(delay)
                try:
                    self.send_response(code)
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting (timeout tests)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
