"""Run the model server on uvicorn: one process, or several workers sharing the port."""

from __future__ import annotations

import os

from ..optional import require
from .settings import SERVE_EXTRA, SETTINGS_ENV, ServeSettings, model_threads, settings_json


def serve(
    model_dir: str | os.PathLike,
    backend: str = "torch",
    quantize: str | None = None,
    host: str = "127.0.0.1",
    port: int = 8000,
    max_batch_size: int = 32,
    max_wait_ms: float = 0.0,
    dynamic_batching: bool | None = None,
    workers: int = 1,
    max_texts_per_request: int = 256,
    max_text_chars: int = 20_000,
    max_body_bytes: int = 1_000_000,
    device: str | None = None,
    num_threads: int | None = None,
    log_level: str = "info",
) -> None:
    """Serve a saved text model over HTTP until SIGINT or SIGTERM (then the requests already
    accepted are finished before the process exits).

    Args:
        model_dir: A text run's ``output_dir``.
        backend: ``torch`` or ``onnxruntime`` (``model.onnx``, exported on first use).
        quantize: ``int8`` with ``backend="onnxruntime"``: dynamic int8 weights.
        host: Interface to listen on; the default answers this machine only (put a reverse
            proxy in front to serve others, see ``docs/serving.md``).
        port: TCP port.
        max_batch_size: Texts per forward pass at most.
        max_wait_ms: How long a request may wait for others to share its batch (ms).
        dynamic_batching: False: each request is predicted on its own; None: on, except for
            int8 (:func:`~nlp_transfer.serving.settings.default_dynamic_batching`).
        workers: uvicorn worker processes sharing the port, each with its own model.
        max_texts_per_request: Limit per request (more: 422).
        max_text_chars: Limit per text (longer: 422).
        max_body_bytes: Limit on a request body (larger: 413).
        device: Torch device; default: CUDA when available.
        num_threads: The model's intra-op threads per worker; default
            (:func:`~nlp_transfer.serving.settings.model_threads`): onnxruntime, the worker's
            share of the cores less one (left to the HTTP loop); torch, its share of the cores.
        log_level: uvicorn's log level.

    Raises:
        ImportError: The ``serve`` extra is missing.
        FileNotFoundError: ``model_dir`` holds no saved model.
        ValueError: A bad setting (the message names its flag).
    """
    uvicorn = require("uvicorn", "nlp-transfer serve", SERVE_EXTRA)
    require("fastapi", "nlp-transfer serve", SERVE_EXTRA)
    if workers < 1:
        raise ValueError(f"--workers must be at least 1, got {workers}.")
    threads = model_threads(backend, workers) if num_threads is None else num_threads
    settings = ServeSettings(
        model_dir=str(model_dir),
        backend=backend,
        quantize=quantize,
        device=device,
        max_batch_size=max_batch_size,
        max_wait_ms=max_wait_ms,
        dynamic_batching=dynamic_batching,
        max_texts_per_request=max_texts_per_request,
        max_text_chars=max_text_chars,
        max_body_bytes=max_body_bytes,
        num_threads=threads,
    ).check()
    os.environ[SETTINGS_ENV] = settings_json(settings)  # each worker builds its app from it
    uvicorn.run(
        "nlp_transfer.serving.app:app_from_environment",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level=log_level,
        timeout_graceful_shutdown=None,  # SIGTERM: finish every accepted request
    )
