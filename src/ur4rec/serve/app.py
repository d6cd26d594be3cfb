"""The HTTP service: a FastAPI app around one loaded :class:`Recommender`.

GET (or HEAD) /health, GET /users/{raw_id}/recommendations?k=10, POST /recommendations (a new
user's history and optional preference text), POST /items (an item that arrived after
training, scored from its text; runs/overlay.py); the OpenAPI schema is at /openapi.json, docs at
/docs (Swagger UI served from the package itself, so it works offline). Unknown ids answer
404, a bad k or body 422, an item id that exists 409, a body over the size limit 413; an
unexpected failure 500 with no traceback or path.

Model work never runs on the event loop: one worker thread does all of it, so /health and
request parsing stay responsive under load. Requests that arrive while the worker is busy are
queued and scored together in its next call (:class:`MicroBatcher`): under load the batches
grow and the fixed per-call cost is shared instead of queued behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import sys
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Literal

import torch
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ur4rec.errors import Ur4recError
from ur4rec.runs.overlay import DuplicateItemError, parse_item
from ur4rec.serve.recommender import (
    MAX_K,
    HistoryQuery,
    Recommendations,
    Recommender,
    UnknownIdError,
)
from ur4rec.text.domain import domain_of
from ur4rec.version import __version__

MAX_BODY_BYTES = 64 * 1024
MAX_HISTORY = 2000
MAX_ITEM_TEXT = 20_000


class ItemRefOut(BaseModel):
    item: str
    title: str


class ExplanationOut(BaseModel):
    preference_sentence: str | None = None
    preference_similarity: float | None = None
    history_item: ItemRefOut | None = None
    history_similarity: float | None = None
    sentence: str | None = Field(None, description="with explain=llm: the evidence in words")


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
    cooccurrence_weights: dict[str, float] | None = Field(
        None,
        description="the co-occurrence branch's weights: cooccurrence_weight (every item), "
        "rare_weight and rare_bonus (rare items)",
    )
    router: list[float] | None = Field(None, description="retriever expert weights")
    preference_text: str | None = None
    notes: list[str] = []


def _utf8(text: str) -> str:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("not valid Unicode text (a lone surrogate?)") from None
    return text


class HistoryRequest(BaseModel):
    # Strict: `true` is not an item id and "10" is not a k; unknown fields are named.
    model_config = ConfigDict(strict=True, extra="forbid")

    history: list[StrictStr | StrictInt] = Field(
        min_length=1, max_length=MAX_HISTORY, description="raw item ids, oldest first"
    )
    preference_text: StrictStr | None = Field(None, max_length=4000)
    k: StrictInt = Field(10, ge=1, le=MAX_K)
    explain: StrictBool | Literal["llm"] = Field(
        False, description="true: evidence per item; llm: also a sentence written by an LLM"
    )

    @field_validator("history")
    @classmethod
    def _ids_are_text(cls, value: list[str | int]) -> list[str | int]:
        for item in value:
            if isinstance(item, str):
                _utf8(item)
        return value

    @field_validator("preference_text")
    @classmethod
    def _text_is_text(cls, value: str | None) -> str | None:
        return None if value is None else _utf8(value)


class NewItemRequest(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    id: StrictStr | StrictInt = Field(description="the item's raw id, new to the catalogue")
    title: StrictStr | None = Field(None, max_length=500, description="default: the id")
    text: StrictStr = Field(
        min_length=1, max_length=MAX_ITEM_TEXT, description="what the item is, in words"
    )
    metadata: dict[str, Any] | None = Field(None, description="e.g. year, genres")

    @field_validator("text", "title")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not _utf8(value).strip():
            raise ValueError("must not be empty or blank")
        return value


class NewItemOut(BaseModel):
    item: str
    items: int = Field(description="items in the catalogue now")


class Health(BaseModel):
    status: str
    model: str
    dataset: str
    users: int
    items: int
    version: str
    encoder: str | None  # how new texts are encoded: "onnx", "torch float32", ...; None: no text


class MicroBatcher:
    """Queues requests and answers them with calls of ``score_many`` on ``executor``, one call
    at a time: everything that arrived while the previous call ran goes into the next one
    (at most ``max_batch``). It never waits for more requests to arrive."""

    def __init__(
        self,
        score_many: Callable[[list[Any]], list[Any]],
        executor: ThreadPoolExecutor,
        max_batch: int = 64,
    ) -> None:
        self.score_many, self.executor, self.max_batch = score_many, executor, max_batch
        self.pending: list[tuple[Any, asyncio.Future[Any]]] = []
        self.draining = False
        self._task: asyncio.Task[None] | None = None

    async def submit(self, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self.pending.append((request, future))
        if not self.draining:
            self.draining = True
            self._task = loop.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            await asyncio.sleep(0)  # let the handlers already woken in this turn join
            while self.pending:
                batch = self.pending[: self.max_batch]
                self.pending = self.pending[self.max_batch :]
                requests = [request for request, _ in batch]
                try:
                    results = await loop.run_in_executor(self.executor, self.score_many, requests)
                except Exception as exc:  # hand the failure to every waiting request
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
        finally:
            self.draining = False


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


NO_LLM = "explain=llm: this service has no LLM backend (ur4rec serve --llm-model ...); the "
NO_LLM += "evidence is given instead"


def create_app(
    recommender: Recommender, max_body_bytes: int = MAX_BODY_BYTES, explainer: Any = None
) -> FastAPI:
    """``explainer``: an :class:`ur4rec.serve.explain.LLMExplainer` for ``explain=llm``."""
    worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ur4rec-model")
    # LLM calls wait on the network: their own threads, never the model's.
    writers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="ur4rec-llm")
    if explainer is not None:
        explainer.domain = domain_of(recommender.dataset)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        worker.shutdown(wait=False, cancel_futures=True)
        writers.shutdown(wait=False, cancel_futures=True)

    app = FastAPIOffline(
        lifespan=lifespan,
        title="ur4rec",
        version=__version__,
        description=f"{recommender.kind} recommendations, trained on {recommender.dataset_name}.",
        redoc_url=None,
    )
    # One thread does all model work (the worker above): torch is called from one thread at
    # a time, and the event loop stays free for /health and for parsing the next requests.

    @app.exception_handler(UnknownIdError)
    async def unknown_id(request: Request, exc: UnknownIdError) -> JSONResponse:
        return JSONResponse(status_code=404, content={"detail": str(exc)})

    @app.exception_handler(DuplicateItemError)
    async def duplicate_item(request: Request, exc: DuplicateItemError) -> JSONResponse:
        return JSONResponse(status_code=409, content={"detail": str(exc)})

    @app.exception_handler(Ur4recError)
    async def bad_request(request: Request, exc: Ur4recError) -> JSONResponse:
        return JSONResponse(status_code=422, content={"detail": str(exc)})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # The default handler echoes the input, which may not even be encodable (a lone
        # surrogate): name the field and the problem only.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
            for e in exc.errors()
        ]
        body = json.dumps({"detail": errors}, ensure_ascii=True)
        return Response(body, status_code=422, media_type="application/json")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(status_code=500, content={"detail": "internal error"})

    @app.head("/health", include_in_schema=False)
    async def health_head() -> Response:
        return Response(media_type="application/json")

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "model": recommender.kind,
            "dataset": recommender.dataset_name,
            "users": recommender.dataset.n_users,
            "items": recommender.dataset.n_items,
            "version": __version__,
            "encoder": recommender.encoder_description,
        }

    def score_many(requests: list[Any]) -> list[bytes | Exception]:
        """Known users' requests in one batched call per explain setting, new histories in
        one more, each answer rendered to JSON here (off the event loop); a request that
        fails alone gets its own error, not the batch's."""
        results: list[Any] = [None] * len(requests)
        recommender.sync_items()  # items another worker or `ur4rec items add` added
        for explain in (False, True):
            rows = [
                i
                for i, r in enumerate(requests)
                if not isinstance(r, HistoryQuery) and r[2] == explain
            ]
            if rows:
                users, ks = [requests[i][0] for i in rows], [requests[i][1] for i in rows]
                batch = recommender.recommend_users(users, ks, explain)
                for i, result in zip(rows, batch, strict=True):
                    results[i] = result
        rows = [i for i, r in enumerate(requests) if isinstance(r, HistoryQuery)]
        if rows:
            try:
                batch = recommender.recommend_histories([requests[i] for i in rows])
            except Exception:  # find the request at fault: score them one by one
                batch = []
                for i in rows:
                    try:
                        batch.extend(recommender.recommend_histories([requests[i]]))
                    except Exception as exc:
                        batch.append(exc)
            for i, result in zip(rows, batch, strict=True):
                results[i] = result
        return [r if isinstance(r, Exception) else _render(r) for r in results]

    batcher = MicroBatcher(score_many, worker)

    async def answer(request: Any, in_words: bool = False) -> Response:
        result = await batcher.submit(request)
        if isinstance(result, Exception):
            raise result
        if in_words:
            out = json.loads(result)
            if explainer is None:
                out.setdefault("notes", []).append(NO_LLM)
            else:
                loop = asyncio.get_running_loop()
                out = await loop.run_in_executor(writers, explainer.explain, out)
            result = json.dumps(out, ensure_ascii=False, separators=(",", ":")).encode()
        return Response(result, media_type="application/json")

    @app.get("/users/{raw_id}/recommendations", response_model=RecommendationsOut)
    async def for_user(
        raw_id: str,
        k: int = Query(10, ge=1, le=MAX_K, description="how many items"),
        explain: str = Query(
            "false", description="true: evidence per item; llm: also a sentence by an LLM"
        ),
    ) -> Response:
        mode = _explain_mode(explain)
        recommender.user_index(raw_id)  # an unknown id fails alone, with a 404
        return await answer((raw_id, k, mode is not False), in_words=mode == "llm")

    @app.post("/recommendations", response_model=RecommendationsOut)
    async def for_history(body: HistoryRequest) -> Response:
        history = [str(item) for item in body.history]
        recommender.item_indices(history)  # unknown ids fail alone, with a 404
        query = HistoryQuery(history, body.k, body.preference_text, body.explain is not False)
        return await answer(query, in_words=body.explain == "llm")

    @app.post("/items", response_model=NewItemOut, status_code=201)
    async def add_item(body: NewItemRequest) -> dict[str, Any]:
        """Add an item that arrived after training: recommendable from the next request,
        kept in the run's item overlay. 409 if the id exists, 422 for an empty text."""
        spec = body.model_dump(exclude_none=True)
        item = parse_item(spec, "item")
        loop = asyncio.get_running_loop()
        # On the model thread, between scoring calls: no request sees half an update.
        await loop.run_in_executor(worker, recommender.add_items, [item])
        return {"item": item.id, "items": recommender.dataset.n_items}

    app.add_middleware(BodySizeLimit, limit=max_body_bytes)
    return app


def _explain_mode(value: str) -> bool | str:
    mode = value.strip().lower()
    if mode in ("llm",):
        return "llm"
    if mode in ("true", "1", "yes", "on"):
        return True
    if mode in ("false", "0", "no", "off"):
        return False
    raise HTTPException(422, "explain must be true, false or llm")


def _render(result: Recommendations) -> bytes:
    # Rendered here rather than re-validated against the response model: the dataclasses
    # already have its shape (a test checks it), and validation would cost more than scoring.
    return json.dumps(result.to_json(), ensure_ascii=False, separators=(",", ":")).encode()


def _tune_process(threads: int) -> None:
    # Per-request tensors are tiny: one thread avoids waking a pool for each product.
    torch.set_num_threads(threads)
    # The model thread holds the GIL in Python stretches; shorter turns let the event loop
    # (/health, parsing) in sooner. The default is 5 ms.
    sys.setswitchinterval(0.001)


def _freeze_heap() -> None:
    # The loaded model, encoder and libraries are millions of long-lived objects: a full
    # garbage collection walks them all and stalls every request for a few hundred ms.
    # Frozen, the collector only walks what requests allocate.
    gc.collect()
    gc.freeze()


SERVE_ENV = "UR4REC_SERVE"  # run folder, data folder and checkpoint for worker processes


def serve(
    run_dir: Path,
    data_dir: str | None = None,
    checkpoint: str = "final",
    host: str = "127.0.0.1",
    port: int = 8000,
    threads: int = 1,
    workers: int = 1,
    access_log: bool = False,
    cache_size: int = 4096,
    encoder_precision: str = "auto",
    encoder_threads: int | None = None,
    llm: dict[str, Any] | None = None,
    index: str = "exact",
    encoder_runtime: str = "auto",
) -> None:
    """Run the service until interrupted (uvicorn). The run is loaded before the port opens,
    so a bad run folder fails here, with its own message; ``workers`` > 1 starts that many
    processes, each with its own copy of the model. ``cache_size`` bounds the sentence
    vectors kept per process (new preference texts and template texts of new histories).
    ``encoder_precision`` and ``encoder_threads`` set how new texts are encoded: by default
    in bfloat16 where the CPU has it natively, on all of the process's CPUs (scoring stays
    on ``threads``); ``encoder_runtime``: ``auto`` (ONNX Runtime where it is installed and
    the precision is float32), ``torch`` or ``onnx``. ``llm``: the backend for
    ``explain=llm`` (serve/explain.py). ``index``: ``exact`` or ``ann`` (serve/index.py)."""
    import uvicorn

    from ur4rec.serve.explain import explainer_from_spec

    _tune_process(threads)
    encoder = {
        "encoder_precision": encoder_precision, "encoder_threads": encoder_threads,
        "encoder_runtime": encoder_runtime, "index": index,
    }  # fmt: skip
    recommender = Recommender(
        run_dir, data_dir, checkpoint, cache_size=cache_size, preload_encoder=True, **encoder
    )
    options = {"host": host, "port": port, "access_log": access_log, "log_level": "info"}
    if workers <= 1:
        app = create_app(recommender, explainer=explainer_from_spec(llm))
        _freeze_heap()
        uvicorn.run(app, **options)
        return
    # Loaded only to fail early: each worker loads its own, so the parent (uvicorn's
    # supervisor) lets go of the model and encoder before they start.
    del recommender
    gc.collect()
    os.environ[SERVE_ENV] = json.dumps(
        {
            "run": str(run_dir),
            "data": data_dir,
            "checkpoint": checkpoint,
            "threads": threads,
            "cache_size": cache_size,
            "llm": llm,
            **encoder,
        }
    )
    uvicorn.run(f"{__name__}:app_from_environment", factory=True, workers=workers, **options)


def app_from_environment() -> FastAPI:
    """The app of one worker process, for the run named in ``$UR4REC_SERVE``."""
    spec = json.loads(os.environ[SERVE_ENV])
    _tune_process(spec["threads"])
    recommender = Recommender(
        Path(spec["run"]),
        spec["data"],
        spec["checkpoint"],
        cache_size=spec["cache_size"],
        preload_encoder=True,
        encoder_precision=spec["encoder_precision"],
        encoder_threads=spec["encoder_threads"],
        encoder_runtime=spec.get("encoder_runtime", "auto"),
        index=spec.get("index", "exact"),
    )
    from ur4rec.serve.explain import explainer_from_spec

    app = create_app(recommender, explainer=explainer_from_spec(spec.get("llm")))
    _freeze_heap()
    return app
