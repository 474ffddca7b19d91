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
import json
import logging
import os
import time
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..optional import require
from .model_server import Server
from .protocol import BodyLimit, CountRequests, request_model
from .settings import SERVE_EXTRA, SETTINGS_ENV, ServeSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..text.classifier import TextClassifier


def create_app(settings: ServeSettings, classifier: "TextClassifier | None" = None) -> "FastAPI":
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
    from fastapi import FastAPI

    from ..tasks import task_of_model_dir

    settings.check()
    if task_of_model_dir(settings.model_dir).name != "text":
        raise ValueError(
            f"--model_dir {settings.model_dir}: nlp-transfer serve serves text models."
        )
    server = Server(settings, classifier)

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
    _add_predict(app, server)
    _add_info_routes(app, server)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(CountRequests, counter=server.requests)  # outermost: counts 413s too
    return app


def _add_predict(app, server: Server) -> None:
    """``POST /predict``."""
    from fastapi.responses import JSONResponse

    from .batcher import ShuttingDown

    PredictRequest = request_model()

    @app.post("/predict", summary="Classify texts")
    async def predict(request: PredictRequest) -> dict:  # type: ignore[valid-type]
        """Each text's prediction: single-label ``label``, ``score`` and ``scores`` (every
        label's probability; ``abstain`` where the model saved an abstention threshold);
        multi-label ``labels`` and ``scores``; regression ``score``. With ``coverage``, a
        ``prediction_set`` (or ``interval``)."""
        start = time.perf_counter()
        texts = server.check_request(request)
        try:
            future = server.batcher.submit(texts, coverage=request.coverage)
        except ShuttingDown as exc:
            return JSONResponse({"detail": str(exc)}, status_code=503)
        server.accepted += 1
        results = await asyncio.wrap_future(future)
        server.latency.observe(time.perf_counter() - start)
        server.answered += 1
        return {"predictions": results}


def _add_info_routes(app, server: Server) -> None:
    """``GET /health``, ``/metadata``, ``/metrics`` and the page at ``/``."""
    from fastapi.responses import HTMLResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

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


def app_from_environment():
    """The app of the settings in ``$NLP_TRANSFER_SERVE_SETTINGS`` (JSON): uvicorn's factory for
    each worker process (``nlp-transfer serve --workers N``)."""
    raw = os.environ.get(SETTINGS_ENV)
    if not raw:
        raise RuntimeError(f"{SETTINGS_ENV} is not set: start the server with nlp-transfer serve.")
    return create_app(ServeSettings(**json.loads(raw)))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("nlp-transfer")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "unknown"
