"""The HTTP server of a saved text model: FastAPI on uvicorn, with dynamic batching.

Endpoints: ``POST /predict`` (texts, or texts with ``text_pairs``; the saved threshold(s),
calibration, abstention and, with ``coverage``, conformal prediction sets applied exactly as
:class:`~nlp_transfer.text.classifier.TextClassifier` applies them), ``GET /health``,
``GET /metadata``, ``GET /metrics`` (Prometheus text format), ``GET /openapi.json`` (and the
interactive ``/docs``) and ``GET /`` (a page to try the model).

Why FastAPI and uvicorn: request validation with errors that name the field (pydantic), the
OpenAPI schema and graceful shutdown on SIGTERM (uvicorn stops accepting connections and
finishes the requests it has) come maintained and widely deployed; the one thing a model server
needs beyond them, batching concurrent requests into one forward pass, is ours
(:mod:`.batcher`) because it must sort by length and apply the saved thresholds the way every
other backend of this toolkit does. LitServe batches too, but runs the model in separate
worker processes behind its own queue and API, and is far less used.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at
# run time, and the request model is defined inside create_app.
import asyncio
import dataclasses
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..metrics.conformal import add_conformal
from ..optional import require

SERVE_EXTRA = "pip install 'nlp-transfer[serve]' (fastapi, uvicorn, prometheus-client)"
SETTINGS_ENV = "NLP_TRANSFER_SERVE_SETTINGS"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass
class ServeSettings:
    """What ``nlp-transfer serve`` runs (its flags; JSON-serialisable so that each of several
    uvicorn worker processes can rebuild the app from an environment variable).

    Attributes:
        model_dir: A text run's ``output_dir``.
        backend: ``torch`` or ``onnxruntime``.
        quantize: ``int8`` (onnxruntime only) or None.
        device: Torch device (``cpu``, ``cuda``); default: CUDA when available.
        max_batch_size: Texts per forward pass at most.
        max_wait_ms: How long a request may wait for others to share its batch (milliseconds).
        dynamic_batching: False: each request is predicted alone.
        max_texts_per_request: More texts in one request are refused (422).
        max_text_chars: A longer text is refused (422); the model truncates to its
            ``max_seq_length`` tokens anyway.
        max_body_bytes: A larger request body is refused (413).
        num_threads: Torch intra-op threads in this process (None: torch's default).
    """

    model_dir: str
    backend: str = "torch"
    quantize: str | None = None
    device: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    dynamic_batching: bool = True
    max_texts_per_request: int = 256
    max_text_chars: int = 20_000
    max_body_bytes: int = 1_000_000
    num_threads: int | None = None

    def check(self) -> "ServeSettings":
        """Raise ValueError naming the flag of a bad setting; return self."""
        model = Path(self.model_dir).expanduser()
        if not (model / "config.json").is_file():
            raise FileNotFoundError(f"--model_dir {model}: no saved model there (config.json).")
        if self.backend not in ("torch", "onnxruntime"):
            raise ValueError(f"--backend must be torch or onnxruntime, got {self.backend!r}.")
        if self.quantize not in (None, "int8"):
            raise ValueError(f"--quantize must be int8, got {self.quantize!r}.")
        if self.quantize and self.backend != "onnxruntime":
            raise ValueError("--quantize int8 needs --backend onnxruntime.")
        for name in ("max_batch_size", "max_texts_per_request", "max_text_chars", "max_body_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name} must be at least 1, got {getattr(self, name)}.")
        if self.max_wait_ms < 0:
            raise ValueError(f"--max_wait_ms must be 0 or more, got {self.max_wait_ms}.")
        return self


def _schemas():
    """The request model (built on first use: pydantic is imported with FastAPI)."""
    from pydantic import BaseModel, ConfigDict, Field

    class PredictRequest(BaseModel):
        """``POST /predict``'s body."""

        model_config = ConfigDict(extra="forbid")
        texts: list[str] = Field(
            min_length=1, description="Texts to classify (at least one).", examples=[["great"]]
        )
        text_pairs: list[str] | None = Field(
            None, description="Sentence-pair models: the second text of each item of texts."
        )
        coverage: float | None = Field(
            None,
            gt=0,
            lt=1,
            description="E.g. 0.9: add a conformal prediction_set (regression: interval) that "
            "holds the truth with at least this probability.",
        )

    return PredictRequest


def _unprocessable(field_name: str, message: str):
    """A 422 in FastAPI's own validation-error shape, naming the body field."""
    from fastapi import HTTPException

    return HTTPException(
        status_code=422,
        detail=[{"loc": ["body", field_name], "msg": message, "type": "value_error"}],
    )


class _BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413 before the app reads it
    (by its ``Content-Length``, or by counting a chunked body as it arrives)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            return await self._refuse(send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _BodyTooLarge:
            await self._refuse(send)

    async def _refuse(self, send):
        message = (
            f"The request body is over the server's limit of {self.max_bytes} bytes "
            "(--max_body_bytes): send fewer or shorter texts per request."
        )
        body = json.dumps({"detail": message}).encode()
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def model_card_summary(model_dir: str | os.PathLike, max_chars: int = 600) -> str | None:
    """The first paragraph of prose in the model's ``README.md`` (its model card), or None."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    if text.startswith("---"):  # YAML front matter
        text = text.split("---", 2)[-1]
    for block in text.split("\n\n"):
        block = block.strip()
        if block and not block.startswith(("#", "|", "<", "```", "-", "!")):
            return block[:max_chars]
    return None


class Server:
    """A loaded model, its batcher and its metrics: what the app's endpoints use.

    Args:
        settings: The checked settings.
        classifier: An already loaded classifier (tests); default: loaded from
            ``settings.model_dir`` with its backend.
    """

    def __init__(self, settings: ServeSettings, classifier=None):
        prometheus = require("prometheus_client", "nlp-transfer serve", SERVE_EXTRA)
        from ..text.classifier import TextClassifier
        from .batcher import DynamicBatcher

        self.settings = settings.check()
        if settings.num_threads:
            import torch

            torch.set_num_threads(settings.num_threads)
        if classifier is None:
            classifier = TextClassifier.from_pretrained(
                settings.model_dir, settings.device, settings.backend, settings.quantize
            )
        self.classifier = classifier
        self.registry = prometheus.CollectorRegistry()
        self.requests = prometheus.Counter(
            "nlp_transfer_requests", "HTTP requests by path and status code.",
            ["path", "status"], registry=self.registry,
        )  # fmt: skip
        self.latency = prometheus.Histogram(
            "nlp_transfer_predict_latency_seconds", "POST /predict latency, from the request's "
            "arrival to its response (seconds).", buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.batch_sizes = prometheus.Histogram(
            "nlp_transfer_batch_size", "Texts per forward pass.", buckets=BATCH_BUCKETS,
            registry=self.registry,
        )  # fmt: skip
        self.batch_seconds = prometheus.Histogram(
            "nlp_transfer_batch_seconds", "Seconds per forward pass (tokenizing, predicting, "
            "decoding).", buckets=LATENCY_BUCKETS, registry=self.registry,
        )  # fmt: skip
        self.texts = prometheus.Counter(
            "nlp_transfer_texts", "Texts predicted.", registry=self.registry
        )
        self.batcher = DynamicBatcher(
            self.run_batch,
            settings.max_batch_size,
            settings.max_wait_ms,
            settings.dynamic_batching,
            on_batch=self._observe_batch,
        )
        prometheus.Gauge(
            "nlp_transfer_queue_depth", "Texts accepted and waiting for a batch.",
            registry=self.registry,
        ).set_function(lambda: self.batcher.queue_depth)  # fmt: skip
        self.pairs = bool(getattr(classifier.config, "text_pair_column", None))
        self.accepted = self.answered = 0  # POST /predict requests read, and answered

    def _observe_batch(self, size: int, seconds: float) -> None:
        self.batch_sizes.observe(size)
        self.batch_seconds.observe(seconds)
        self.texts.inc(size)

    def run_batch(self, jobs) -> list[list[dict]]:
        """Predict the texts of ``jobs`` in one call (sorted by length inside), then decode each
        job's rows with its own options (worker thread)."""
        texts = [t for job in jobs for t in job.texts]
        logits = self.classifier.predict_logits(texts, self.settings.max_batch_size)
        out, start = [], 0
        for job in jobs:
            rows = logits[start : start + len(job.texts)]
            start += len(job.texts)
            results = self.classifier.decode(rows)
            coverage = job.options.get("coverage")
            if coverage is not None:
                add_conformal(
                    results, self.classifier.conformal, coverage, self.classifier.labels, job.texts
                )
            out.append(results)
        return out

    def check_request(self, request) -> list:
        """The request's texts (tuples for pairs), or a 422 naming the field at fault."""
        limits = self.settings
        if len(request.texts) > limits.max_texts_per_request:
            raise _unprocessable(
                "texts",
                f"{len(request.texts)} texts in one request; the server takes at most "
                f"{limits.max_texts_per_request} (--max_texts_per_request): split the request.",
            )
        long = [i for i, t in enumerate(request.texts) if len(t) > limits.max_text_chars]
        if long:
            raise _unprocessable(
                "texts",
                f"texts[{long[0]}] has {len(request.texts[long[0]])} characters; the server "
                f"takes at most {limits.max_text_chars} per text (--max_text_chars).",
            )
        if request.coverage is not None:
            try:
                self.classifier.check_coverage(request.coverage)
            except ValueError as exc:
                raise _unprocessable("coverage", str(exc).replace("--coverage: ", "")) from None
        if request.text_pairs is None:
            if self.pairs:
                raise _unprocessable(
                    "text_pairs",
                    "this is a sentence-pair model: give text_pairs, one second text per text.",
                )
            return list(request.texts)
        if not self.pairs:
            raise _unprocessable(
                "text_pairs", "this model classifies single texts: leave text_pairs out."
            )
        if len(request.text_pairs) != len(request.texts):
            raise _unprocessable(
                "text_pairs",
                f"{len(request.text_pairs)} text_pairs for {len(request.texts)} texts: give "
                "one second text per text.",
            )
        long = [i for i, t in enumerate(request.text_pairs) if len(t) > limits.max_text_chars]
        if long:
            raise _unprocessable(
                "text_pairs",
                f"text_pairs[{long[0]}] has {len(request.text_pairs[long[0]])} characters; the "
                f"server takes at most {limits.max_text_chars} per text (--max_text_chars).",
            )
        return list(zip(request.texts, request.text_pairs, strict=True))

    def metadata(self) -> dict:
        """``GET /metadata``: what a client needs to know about the model and the server."""
        c, config = self.classifier, self.classifier.config
        conformal = c.conformal
        return {
            "model_dir": str(Path(self.settings.model_dir).resolve().name),
            "problem_type": c.problem_type,
            "labels": c.labels if c.problem_type != "regression" else [],
            "decision_threshold": c.threshold,
            "label_thresholds": getattr(config, "label_thresholds", None),
            "calibration": getattr(config, "calibration", None),
            "abstain_below": getattr(config, "abstain_below", None),
            "prediction_sets": None
            if conformal is None
            else {"method": conformal["method"], "num_examples": len(conformal["scores"])},
            "pair_model": self.pairs,
            "max_seq_length": c.max_seq_length,
            "backend": c.backend
            + (f" ({self.settings.quantize})" if self.settings.quantize else ""),
            "model_card": model_card_summary(self.settings.model_dir),
            "limits": {
                k: getattr(self.settings, k)
                for k in ("max_texts_per_request", "max_text_chars", "max_body_bytes")
            },
            "batching": {
                "dynamic": self.settings.dynamic_batching,
                "max_batch_size": self.settings.max_batch_size,
                "max_wait_ms": self.settings.max_wait_ms,
            },
        }


def create_app(settings: ServeSettings, classifier=None):
    """The FastAPI app serving ``settings.model_dir``.

    Args:
        settings: What to serve and how (:class:`ServeSettings`).
        classifier: An already loaded :class:`~nlp_transfer.text.classifier.TextClassifier`
            (default: loaded from the settings).

    Returns:
        A FastAPI application (ASGI), wrapped in the request-body limit.

    Raises:
        ImportError: FastAPI or prometheus-client is missing (``nlp-transfer[serve]``).
        FileNotFoundError: ``model_dir`` holds no saved model.
        ValueError: A bad setting (the message names its flag), or an image model.
    """
    require("fastapi", "nlp-transfer serve", SERVE_EXTRA)
    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from ..tasks import task_of_model_dir

    settings.check()
    if task_of_model_dir(settings.model_dir).name != "text":
        raise ValueError(
            f"--model_dir {settings.model_dir}: nlp-transfer serve serves text models."
        )
    server = Server(settings, classifier)
    PredictRequest = _schemas()

    @asynccontextmanager
    async def lifespan(app):
        server.batcher.start()
        yield
        # uvicorn has finished the requests in flight (SIGTERM): now end the worker
        await asyncio.get_running_loop().run_in_executor(None, server.batcher.stop)
        logging.getLogger("uvicorn.error").info(
            f"nlp-transfer serve stopped after answering {server.answered} of "
            f"{server.accepted} accepted /predict requests."
        )

    app = FastAPI(
        title="nlp-transfer model server",
        description=f"Predictions of the text model {Path(settings.model_dir).name}.",
        version=_version(),
        lifespan=lifespan,
    )
    app.state.server = server

    @app.middleware("http")
    async def count_requests(request: Request, call_next):
        response = await call_next(request)
        path = request.scope.get("route").path if request.scope.get("route") else "other"
        server.requests.labels(path, str(response.status_code)).inc()
        return response

    @app.post("/predict", summary="Classify texts")
    async def predict(request: PredictRequest) -> dict:  # type: ignore[valid-type]
        """Each text's prediction: single-label ``label``, ``score`` and ``scores`` (every
        label's probability; ``abstain`` where the model saved an abstention threshold);
        multi-label ``labels`` and ``scores``; regression ``score``. With ``coverage``, a
        ``prediction_set`` (or ``interval``)."""
        from .batcher import ShuttingDown

        start = time.perf_counter()
        server.accepted += 1
        texts = server.check_request(request)
        try:
            future = server.batcher.submit(texts, coverage=request.coverage)
        except ShuttingDown as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        results = await asyncio.wrap_future(future)
        server.latency.observe(time.perf_counter() - start)
        server.answered += 1
        return {"predictions": results}

    @app.get("/health", summary="Liveness and readiness")
    async def health() -> dict:
        return {"status": "ok", "queue_depth": server.batcher.queue_depth}

    @app.get("/metadata", summary="The model: labels, problem type, thresholds, model card")
    async def metadata() -> dict:
        return server.metadata()

    @app.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    page = resources.files(__package__).joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    return app


def app_from_environment():
    """The app of the settings in ``$NLP_TRANSFER_SERVE_SETTINGS`` (JSON): uvicorn's factory for
    each worker process (``nlp-transfer serve --workers N``)."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start the server with nlp-transfer serve.")
    return create_app(ServeSettings(**json.loads(raw)))


def settings_json(settings: ServeSettings) -> str:
    """``settings`` as the JSON :func:`app_from_environment` reads."""
    return json.dumps(dataclasses.asdict(settings))


def _version() -> str:
    from .. import __version__

    return __version__
