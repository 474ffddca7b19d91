"""What ``nlp-transfer serve`` runs: its settings, checked, and their JSON form for workers."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path

SERVE_EXTRA = "pip install 'nlp-transfer[serve]' (fastapi, uvicorn, prometheus-client)"
SETTINGS_ENV = "NLP_TRANSFER_SERVE_SETTINGS"


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
        dynamic_batching: False: each request is predicted alone. None:
            :func:`default_dynamic_batching` chooses by backend.
        max_texts_per_request: More texts in one request are refused (422).
        max_text_chars: A longer text is refused (422); the model truncates to its
            ``max_seq_length`` tokens anyway.
        max_body_bytes: A larger request body is refused (413).
        num_threads: The model's intra-op threads in this process: torch's
            (``torch.set_num_threads``) or the onnxruntime session's (not spinning). None:
            :func:`model_threads` chooses.
    """

    model_dir: str
    backend: str = "torch"
    quantize: str | None = None
    device: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 0.0
    dynamic_batching: bool | None = None
    max_texts_per_request: int = 256
    max_text_chars: int = 20_000
    max_body_bytes: int = 1_000_000
    num_threads: int | None = None

    def check(self) -> ServeSettings:
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
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"--num_threads must be at least 1, got {self.num_threads}.")
        if self.dynamic_batching is None:
            self.dynamic_batching = default_dynamic_batching(self.backend, self.quantize)
        if self.max_wait_ms < 0:
            raise ValueError(f"--max_wait_ms must be 0 or more, got {self.max_wait_ms}.")
        return self


def settings_json(settings: ServeSettings) -> str:
    """``settings`` as the JSON :func:`app_from_environment` reads."""
    return json.dumps(dataclasses.asdict(settings))


def default_dynamic_batching(backend: str, quantize: str | None) -> bool:
    """Whether the server batches concurrent requests when neither ``--dynamic_batching`` nor
    ``--no_dynamic_batching`` is given: yes, except for int8 in onnxruntime (on the CPU).

    A forward pass of int8 costs little more than its tokens (a fixed cost of about 23 tokens,
    ``benchmarks/length_batches.py``), so batching saves almost nothing there, and the bursts of
    answers it sends back at once slowed the HTTP side: on a 2-core Intel Xeon at 64 clients
    int8 answered 140 requests/s with batching and 258 without (``serve_load.md``, 2026-12-07);
    at 1, 8 and 32 clients the two were within 8%. torch and onnxruntime float32 gain from
    batching (torch 146 against 100 requests/s at 32 clients).
    """
    return not (backend == "onnxruntime" and quantize == "int8")


def model_threads(backend: str, workers: int = 1, cpu_count: int | None = None) -> int | None:
    """The model's intra-op threads per worker process when ``--num_threads`` is not given.

    onnxruntime: the worker's share of the cores less one, which is left to the HTTP event
    loop, and no spinning (its threads otherwise spin while they wait, on the event loop's
    core): on a 2-core Intel Xeon, int8 with batching at 32 clients answered 275.9 requests/s
    with one thread against 239.2 with two (``serve_settings.md``, docs/serving.md). torch: its
    default (one per core) for one worker (one thread was slower there: 115 against 148
    requests/s at 8 clients), else the worker's share of the cores.

    Returns:
        A thread count, or None for torch's default.
    """
    cores = cpu_count or os.cpu_count() or 1
    share = max(1, cores // workers)
    if backend == "onnxruntime":
        return max(1, share - 1)
    return share if workers > 1 else None
