"""``nlp-transfer serve``: its flags and what it runs (:func:`nlp_transfer.serving.serve`)."""

from __future__ import annotations

import argparse

from .predict import BACKEND_HELP, QUANTIZE_HELP


def add_serve_parser(sub) -> None:
    """``nlp-transfer serve``: its flags."""
    s = sub.add_parser(
        "serve",
        help="Serve a text model over HTTP: POST /predict, a page to try it at /, /metrics.",
        description="Serve a saved text model over HTTP with dynamic batching (FastAPI on "
        "uvicorn): POST /predict, GET /health, /metadata, /metrics (Prometheus), /openapi.json "
        "and a page to try the model at /. SIGTERM finishes the accepted requests, then exits.",
    )
    s.add_argument("--model_dir", required=True, help="A text run's output_dir.")
    s.add_argument(
        "--backend", default="torch", choices=["torch", "onnxruntime"], help=BACKEND_HELP
    )
    s.add_argument("--quantize", choices=["int8"], help=QUANTIZE_HELP)
    s.add_argument("--host", default="127.0.0.1", help="Interface (default: this machine only).")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--max_batch_size", type=int, default=32, help="Texts per forward pass.")
    s.add_argument(
        "--max_wait_ms", type=float, default=0.0,
        help="How long a request may wait for others to share its batch (0: a batch holds what "
        "queued during the last one).",
    )  # fmt: skip
    batching = s.add_mutually_exclusive_group()
    batching.add_argument(
        "--dynamic_batching", action="store_true", default=None,
        help="Batch concurrent requests (default: on, except for --quantize int8).",
    )  # fmt: skip
    batching.add_argument(
        "--no_dynamic_batching", action="store_false", dest="dynamic_batching",
        help="Predict each request on its own.",
    )  # fmt: skip
    s.add_argument("--workers", type=int, default=1, help="Processes, each with its own model.")
    s.add_argument(
        "--num_threads", type=int,
        help="The model's threads per worker (default: onnxruntime cores-1, torch all cores).",
    )  # fmt: skip
    s.add_argument("--max_texts_per_request", type=int, default=256)
    s.add_argument("--max_text_chars", type=int, default=20_000)
    s.add_argument("--max_body_bytes", type=int, default=1_000_000)
    s.add_argument("--device", help="Torch device (default: CUDA when available).")


def serve_main(args: argparse.Namespace) -> int:
    """Run the server until it is stopped."""
    from ..serving import serve

    serve(
        args.model_dir,
        backend=args.backend,
        quantize=args.quantize,
        host=args.host,
        port=args.port,
        max_batch_size=args.max_batch_size,
        max_wait_ms=args.max_wait_ms,
        dynamic_batching=args.dynamic_batching,
        workers=args.workers,
        max_texts_per_request=args.max_texts_per_request,
        max_text_chars=args.max_text_chars,
        max_body_bytes=args.max_body_bytes,
        device=args.device,
        num_threads=args.num_threads,
    )
    return 0
