"""The HTTP service: a FastAPI app around one loaded :class:`Recommender`.

GET /health, GET /users/{raw_id}/recommendations?k=10, POST /recommendations (a new user's
history and optional preference text); the OpenAPI schema is at /openapi.json, docs at /docs.
Unknown ids answer 404, a bad k or body 422, a body over the size limit 413.

Handlers are ``async`` and score on the event loop: a request for a known user is a fraction
of a millisecond of tensor work, less than a hop to a worker thread would cost. Requests for
known users that arrive together are scored together (:class:`MicroBatcher`), so concurrent
clients share the fixed per-call cost instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ur4rec import __version__
from ur4rec.errors import Ur4recError
from ur4rec.serve.recommender import MAX_K, Recommendations, Recommender, UnknownIdError

MAX_BODY_BYTES = 64 * 1024
MAX_HISTORY = 2000


class ItemRefOut(BaseModel):
    item: str
    title: str


class ExplanationOut(BaseModel):
    preference_sentence: str | None = None
    preference_similarity: float | None = None
    history_item: ItemRefOut | None = None
    history_similarity: float | None = None


class RecommendationOut(BaseModel):
    rank: int
    item: str = Field(description="raw item id")
    title: str
    score: float = Field(description="the model's score (fused models: standardised units)")
    scores: dict[str, float] = Field(description="each branch's own score")
    explanation: ExplanationOut | None = None


class RecommendationsOut(BaseModel):
    user: str | None = Field(description="raw user id; null for an ad-hoc history")
    model: str
    items: list[RecommendationOut]
    history_length: int
    sasrec_weight: float | None = None
    prior_weight: float | None = Field(None, description="the EASE prior's fusion weight")
    router: list[float] | None = Field(None, description="retriever expert weights")
    preference_text: str | None = None
    notes: list[str] = []


class HistoryRequest(BaseModel):
    history: list[str | int] = Field(
        min_length=1, max_length=MAX_HISTORY, description="raw item ids, oldest first"
    )
    preference_text: str | None = Field(None, max_length=4000)
    k: int = Field(10, ge=1, le=MAX_K)
    explain: bool = False


class Health(BaseModel):
    status: str
    model: str
    dataset: str
    users: int
    items: int
    version: str


class MicroBatcher:
    """Collects the requests that are ready in one turn of the event loop and answers them
    with a single call of ``score_many``; it never waits for more to arrive."""

    def __init__(self, score_many: Callable[[list[Any]], list[Any]], max_batch: int = 64) -> None:
        self.score_many, self.max_batch = score_many, max_batch
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.scheduled = False

    async def submit(self, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((request, future))
        if not self.scheduled:
            self.scheduled = True
            loop.call_soon(self._flush)  # after the handlers already woken in this turn
        return await future

    def _flush(self) -> None:
        self.scheduled = False
        batch, self.pending = self.pending[: self.max_batch], self.pending[self.max_batch :]
        if self.pending:
            self.scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        try:
            results = self.score_many([request for request, _ in batch])
        except Exception as exc:  # hand the failure to every waiting request
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)


class BodySizeLimit:
    """Refuses request bodies over ``limit`` bytes with 413, whether announced by
    Content-Length or streamed in chunks, before the handler parses anything."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _too_large(send, self.limit)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # FastAPI passes an HTTPException raised while reading a body through.
                    raise HTTPException(413, f"request body over {self.limit} bytes")
            return message

        await self.app(scope, limited, send)


async def _too_large(send: Send, limit: int) -> None:
    body = json.dumps({"detail": f"request body over {limit} bytes"}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(body)),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def create_app(recommender: Recommender, max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    app = FastAPI(
        title="ur4rec",
        version=__version__,
        description=f"{recommender.kind} recommendations, trained on {recommender.dataset_name}.",
    )

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(Ur4recError)
    async def bad_request(request: Request, exc: Ur4recError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": recommender.kind,
            "dataset": recommender.dataset_name,
            "users": recommender.dataset.n_users,
            "items": recommender.dataset.n_items,
            "version": __version__,
        }

    def score_many(requests: list[tuple[str, int, bool]]) -> list[Recommendations]:
        results: list[Any] = [None] * len(requests)
        for explain in (False, True):  # one batched call per setting
            rows = [i for i, r in enumerate(requests) if r[2] == explain]
            if rows:
                users, ks = [requests[i][0] for i in rows], [requests[i][1] for i in rows]
                batch = recommender.recommend_users(users, ks, explain)
                for i, result in zip(rows, batch, strict=True):
                    results[i] = result
        return results

    batcher = MicroBatcher(score_many)

    @app.get("/users/{raw_id}/recommendations", response_model=RecommendationsOut)
    async def for_user(
        raw_id: str,
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
        explain: bool = Query(False, description="add an explanation to each item"),
    ) -> Response:
        recommender.user_index(raw_id)  # an unknown id fails alone, with a 404
        return _out(await batcher.submit((raw_id, k, explain)))

    @app.post("/recommendations", response_model=RecommendationsOut)
    async def for_history(body: HistoryRequest) -> Response:
        history = [str(item) for item in body.history]
        return _out(
            recommender.recommend_history(history, body.k, body.preference_text, body.explain)
        )

    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    return app


def _out(result: Recommendations) -> Response:
    # Rendered here rather than re-validated against the response model: the dataclasses
    # already have its shape (a test checks it), and validation would cost more than scoring.
    body = json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":"))
    return Response(body.encode("utf-8"), media_type="application/json")


SERVE_ENV = "UR4REC_SERVE"  # run folder, data folder and checkpoint for worker processes


def serve(
    run_dir: Path,
    data_dir: str | None = None,
    checkpoint: str = "best",
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 1,
    workers: int = 1,
    access_log: bool = False,
) -> None:
    """Run the service until interrupted (uvicorn). The run is loaded before the port opens,
    so a bad run folder fails here, with its own message; ``workers`` > 1 starts that many
    processes, each with its own copy of the model."""
    import uvicorn

    # Per-request tensors are tiny: one thread avoids waking a pool for each product.
    torch.set_num_threads(threads)
    recommender = Recommender(run_dir, data_dir, checkpoint)
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info"}
    if workers <= 1:
        uvicorn.run(create_app(recommender), **options)
        return
    del recommender  # loaded only to fail early: each worker loads its own
    os.environ[SERVE_ENV] = json.dumps(
        {"run": str(run_dir), "data": data_dir, "checkpoint": checkpoint, "threads": threads}
    )
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment() -> FastAPI:
    """The app of one worker process, for the run named in ``$UR4REC_SERVE``."""
    spec = json.loads(os.environ[SERVE_ENV])
    torch.set_num_threads(spec["threads"])
    return create_app(Recommender(Path(spec["run"]), spec["data"], spec["checkpoint"]))
