"""The HTTP server: any run folders behind one FastAPI app, with limits, an optional API key,
dynamic batching and Prometheus metrics.

    POST /v1/models/{name}/predict  {"inputs": [...], "pairs": [...]?, "options": {...}?}
    POST /v1/models/{name}/explain  the same body; options: {"label": ..., "steps": ...}
    GET  /v1/models   /health   /ready   /metrics   /docs (OpenAPI)

FastAPI and pydantic are imported where the app is built, so `lmtune.serving` imports with the
core dependencies only. (No `from __future__ import annotations` here: FastAPI reads the
endpoints' annotations, which name the request models built inside `create_app`.)
"""

import asyncio
import functools
import hmac
import json
import threading
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, Optional, Union

from .batching import Batcher

if TYPE_CHECKING:
    from fastapi import FastAPI


@dataclass
class Limits:
    max_body_bytes: int = 1_000_000
    max_inputs: int = 64  # inputs per request
    max_chars: int = 10_000  # characters per text (QA: per question and per context)
    max_new_tokens: int = 256  # generation

    @classmethod
    def from_settings(cls, settings: Any) -> "Limits":
        """The limits a serve config group (`cfg.serve`) sets."""
        return cls(max_body_bytes=settings.max_body_bytes, max_inputs=settings.max_inputs,
                   max_chars=settings.max_chars)


# The errors every model route may answer, for the OpenAPI schema.
ROUTE_ERRORS: dict[int | str, dict[str, Any]] = {404: {"description": "unknown model"},
                                                413: {"description": "body too large"},
                                                401: {"description": "API key missing or wrong"}}


@functools.lru_cache(maxsize=None)
def _schemas() -> SimpleNamespace:
    """The request and response models (built once, on first use: pydantic comes with FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class QAInput(BaseModel):
        model_config = ConfigDict(extra="forbid")
        question: str
        context: str

    class Options(BaseModel):
        model_config = ConfigDict(extra="forbid")
        top_k: Optional[int] = Field(None, ge=1, le=20, description="QA: n-best answers")
        max_new_tokens: Optional[int] = Field(None, ge=1, description="generation")
        temperature: Optional[float] = Field(None, ge=0, le=5, description="generation: 0 = greedy")
        top_p: Optional[float] = Field(None, gt=0, le=1, description="generation")

    class PredictRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        inputs: list[Union[str, list[str], QAInput]] = Field(
            ..., min_length=1, description="texts; NER also takes word lists; QA takes {question, context}")
        pairs: Optional[list[str]] = Field(None, description="second texts, for text-pair classifiers")
        options: Optional[Options] = None

    class PredictResponse(BaseModel):
        model: str
        task: str
        predictions: list[Any]

    class ExplainOptions(BaseModel):
        model_config = ConfigDict(extra="forbid")
        label: Optional[str] = Field(None, description="classification: the label(s) to explain, a or a,b; "
                                                        "NER: only entities of this type")
        steps: Optional[int] = Field(None, ge=1, le=400, description="integration steps to start from")

    class ExplainRequest(PredictRequest):  # the inputs and pairs of a prediction, checked alike
        options: Optional[ExplainOptions] = None

    class ExplainResponse(BaseModel):
        model: str
        task: str
        explanations: list[Any]

    return SimpleNamespace(QAInput=QAInput, Options=Options, PredictRequest=PredictRequest,
                           PredictResponse=PredictResponse, ExplainRequest=ExplainRequest,
                           ExplainResponse=ExplainResponse)


class BodyLimit:
    """Rejects request bodies over `max_bytes` (413), whether announced or streamed."""

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes
        self.too_large = {"detail": f"request body over {max_bytes} bytes"}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status = 413 if declared.isdigit() else 400
            return await _send_json(send, status, self.too_large if status == 413
                                    else {"detail": "invalid Content-Length"})
        received, too_large, answered = 0, False, False

        async def limited() -> dict:
            # Past the limit the app sees the body end there; its reply is replaced by a 413.
            nonlocal received, too_large
            if too_large:
                return {"type": "http.request", "body": b"", "more_body": False}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    too_large = True
                    return {"type": "http.request", "body": b"", "more_body": False}
            return message

        async def guarded_send(message: dict) -> None:
            nonlocal answered
            if not too_large:
                await send(message)
            elif message["type"] == "http.response.start" and not answered:
                answered = True
                await _send_json(send, 413, self.too_large)

        await self.app(scope, limited, guarded_send)
        if too_large and not answered:
            await _send_json(send, 413, self.too_large)


async def _send_json(send: Any, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]})
    await send({"type": "http.response.body", "body": payload})


class Served:
    """One run behind the server: its predictor and its batcher."""

    def __init__(self, name: str, predictor: Any):
        self.name, self.predictor = name, predictor
        self.task = predictor.task.name
        self.batcher: Batcher | None = None
        # An explanation hooks the model's embedding layer while it runs: predictions wait for it.
        self.lock = threading.Lock()

    def predict(self, items: list[tuple[Any, Any]], options: dict[str, Any]) -> list[Any]:
        texts = [text for text, _ in items]
        pairs = [pair for _, pair in items]
        with self.lock:
            return self.predictor.predict(texts, None if all(p is None for p in pairs) else pairs, **options)

    def explain(self, items: list[tuple[Any, Any]], options: dict[str, Any]) -> list[dict[str, Any]]:
        """Explanations (lmtune.inference.explain) of this request's inputs, one per input."""
        from ..inference.explain import DEFAULT_STEPS, explain

        texts, pairs = [text for text, _ in items], [pair for _, pair in items]
        with self.lock:
            found = explain(self.predictor, texts, None if all(p is None for p in pairs) else pairs,
                            label=options.get("label"), n_steps=options.get("steps", DEFAULT_STEPS))
        return [e.to_dict() for e in found]

    def check(self, items: list[tuple[Any, Any]]) -> None:
        """Build this request's records on its own, before it joins a batch: an input the model
        cannot take (pairs for a single-text model, a wrong shape) fails here with its own 422,
        instead of failing the batch it would have shared with other requests."""
        for i, (text, pair) in enumerate(items):
            self.predictor.task.make_record(text, pair, i)

    def describe(self) -> dict[str, Any]:
        cfg = self.predictor.cfg
        return {"name": self.name, "task": self.task, "labels": self.predictor.labels,
                "method": cfg.method.name, "base_model": cfg.model.name,
                "pairs": bool(cfg.data.text_pair_column)}


def _metrics_registry() -> tuple[Any, dict[str, Any]]:
    from prometheus_client import CollectorRegistry, Counter, Histogram

    registry = CollectorRegistry()
    return registry, {
        "requests": Counter("lmtune_requests", "Prediction requests", ["model", "status"], registry=registry),
        "latency": Histogram("lmtune_request_seconds", "Prediction latency", ["model"], registry=registry,
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10)),
        "batch": Histogram("lmtune_batch_size", "Inputs per forward pass", ["model"], registry=registry,
                           buckets=(1, 2, 4, 8, 16, 32, 64, 128)),
    }


def create_app(runs: dict[str, Any], api_key: str | None = None, limits: Limits | None = None,
               batching: bool = True, max_batch: int = 32, max_wait_ms: float = 5.0) -> "FastAPI":
    """An app serving `runs` (name -> predictor). Predictors are loaded by the caller, so adapter
    runs over one base share it (lmtune.load does that)."""
    from fastapi import Depends, FastAPI, HTTPException
    from fastapi.responses import JSONResponse, PlainTextResponse
    from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

    PredictRequest, PredictResponse = _schemas().PredictRequest, _schemas().PredictResponse
    limits = limits or Limits()
    served = {name: Served(name, predictor) for name, predictor in runs.items()}
    registry, metric = _metrics_registry()
    state = {"ready": False}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for item in served.values():
            item.batcher = Batcher(item.predict, max_batch, max_wait_ms, batching,
                                   on_batch=metric["batch"].labels(item.name).observe)
            item.batcher.start()
        state["ready"] = True
        yield
        state["ready"] = False
        for item in served.values():
            await item.batcher.stop()

    app = FastAPI(title="lmtune", version="1", lifespan=lifespan,
                  description="Predictions from lmtune runs: classification, NER, QA, generation.")
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    header_key = APIKeyHeader(name="X-API-Key", auto_error=False)
    bearer = HTTPBearer(auto_error=False)

    def authorize(key: Optional[str] = Depends(header_key),
                  credentials: Optional[HTTPAuthorizationCredentials] = Depends(bearer)) -> None:
        if api_key is None:
            return
        given = key or (credentials.credentials if credentials else "")
        if not hmac.compare_digest(given.encode(), api_key.encode()):
            raise HTTPException(401, "missing or wrong API key (X-API-Key or Authorization: Bearer)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready", responses={503: {"description": "starting or shutting down"}})
    def ready() -> JSONResponse:
        ok = state["ready"]
        return JSONResponse({"ready": ok, "models": sorted(served)}, status_code=200 if ok else 503)

    @app.get("/metrics", response_class=PlainTextResponse, dependencies=[Depends(authorize)])
    def metrics() -> PlainTextResponse:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    def lookup(name: str) -> Any:
        """The served model called `name`, or a 404 that lists the served ones."""
        item = served.get(name)
        if item is None:
            raise HTTPException(404, f"no model {name!r}; served: {', '.join(sorted(served))}")
        return item

    @app.get("/v1/models", dependencies=[Depends(authorize)])
    def models() -> list[dict[str, Any]]:
        return [item.describe() for item in served.values()]

    @app.post("/v1/models/{name}/predict", response_model=PredictResponse, dependencies=[Depends(authorize)],
              responses=ROUTE_ERRORS)
    async def predict(name: str, request: PredictRequest) -> PredictResponse:
        item = lookup(name)
        if item.batcher is None:
            raise HTTPException(503, "the server is starting")
        start = time.perf_counter()
        try:
            items = _items(item, request.inputs, request.pairs, limits)
            options = request.options.model_dump(exclude_none=True) if request.options else {}
            if options.get("max_new_tokens", 0) > limits.max_new_tokens:
                raise HTTPException(422, f"options.max_new_tokens is over the limit {limits.max_new_tokens}")
            item.check(items)
            predictions = await item.batcher.submit(items, options)
        except HTTPException as exc:
            metric["requests"].labels(name, str(exc.status_code)).inc()
            raise
        except (TypeError, ValueError) as exc:
            metric["requests"].labels(name, "422").inc()
            raise HTTPException(422, str(exc)) from exc
        metric["requests"].labels(name, "200").inc()
        metric["latency"].labels(name).observe(time.perf_counter() - start)
        return PredictResponse(model=name, task=item.task, predictions=_plain(predictions))

    ExplainRequest, ExplainResponse = _schemas().ExplainRequest, _schemas().ExplainResponse

    @app.post("/v1/models/{name}/explain", response_model=ExplainResponse, dependencies=[Depends(authorize)],
              responses=ROUTE_ERRORS)
    async def explain(name: str, request: ExplainRequest) -> ExplainResponse:
        """Token attributions by integrated gradients; inputs are checked as predict checks them."""
        item = lookup(name)
        try:
            items = _items(item, request.inputs, request.pairs, limits)
            item.check(items)
            options = request.options.model_dump(exclude_none=True) if request.options else {}
            explanations = await asyncio.to_thread(item.explain, items, options)
        except (TypeError, ValueError) as exc:
            raise HTTPException(422, str(exc)) from exc
        return ExplainResponse(model=name, task=item.task, explanations=_plain(explanations))

    return app


def _input_shape(task: Any) -> tuple[tuple[type, ...], str]:
    """The request types of the input shapes a task takes (`Task.input_kinds`), and how an
    error message describes them."""
    kinds = {"text": (str, "a text"), "words": (list, "a list of words"),
             "question_context": (_schemas().QAInput, "{question, context}")}
    shapes = [kinds[kind] for kind in task.input_kinds]
    return tuple(kind for kind, _ in shapes), " or ".join(about for _, about in shapes)


def _items(item: Served, inputs: list[Any], pairs: list[str] | None, limits: Limits) -> list[tuple[Any, Any]]:
    """Check the inputs against the model's task and the limits; (text, pair) per input.
    Every problem is a ValueError, answered with a 422."""
    if len(inputs) > limits.max_inputs:
        raise ValueError(f"{len(inputs)} inputs; at most {limits.max_inputs} per request")
    if pairs is not None and len(pairs) != len(inputs):
        raise ValueError(f"{len(inputs)} inputs but {len(pairs)} pairs")
    wanted, shape = _input_shape(item.predictor.task)
    items = []
    for i, value in enumerate(inputs):
        if not isinstance(value, wanted):
            raise ValueError(f"inputs[{i}]: a {item.task} model takes {shape}")
        if isinstance(value, _schemas().QAInput):
            text, pair = value.question, value.context
        else:
            text, pair = value, pairs[i] if pairs is not None else None
        parts = [" ".join(text) if isinstance(text, list) else text] + ([pair] if pair is not None else [])
        longest = max(len(part) for part in parts)
        if longest > limits.max_chars:
            raise ValueError(f"inputs[{i}]: {longest} characters; at most {limits.max_chars} per text")
        items.append((text, pair))
    return items


def _plain(value: Any) -> Any:
    """Predictions as JSON-ready values (numpy scalars become Python numbers)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


def load_runs(run_dirs: list[str | Path], backend: str = "pytorch", quantized: bool = False) -> dict[str, Any]:
    """name -> predictor for each run folder (the folder name; a repeated name gets a suffix)."""
    from ..inference.predictor import load

    runs: dict[str, Any] = {}
    for run_dir in run_dirs:
        name = Path(run_dir).resolve().name
        while name in runs:
            name += "-2"
        runs[name] = load(run_dir, backend=backend, quantized=quantized)
    return runs
