"""The model side of the server: the loaded classifier, its batcher, metrics, checks, metadata."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..metrics.conformal import add_conformal
from ..optional import require
from .protocol import unprocessable
from .settings import SERVE_EXTRA, ServeSettings, model_threads

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


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
            return block.replace("`", "")[:max_chars]  # plain text: the page shows it as is
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
        threads = settings.num_threads
        if threads is None:
            threads = model_threads(settings.backend)
        if threads and settings.backend == "torch":
            import torch

            torch.set_num_threads(threads)
        if classifier is None:
            classifier = TextClassifier.from_pretrained(
                settings.model_dir,
                settings.device,
                backend=settings.backend,
                quantize=settings.quantize,
                num_threads=threads if settings.backend == "onnxruntime" else None,
            )
        self.classifier = classifier
        self.num_threads = threads
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
            raise unprocessable(
                "texts",
                f"{len(request.texts)} texts in one request; the server takes at most "
                f"{limits.max_texts_per_request} (--max_texts_per_request): split the request.",
            )
        long = [i for i, t in enumerate(request.texts) if len(t) > limits.max_text_chars]
        if long:
            raise unprocessable(
                "texts",
                f"texts[{long[0]}] has {len(request.texts[long[0]])} characters; the server "
                f"takes at most {limits.max_text_chars} per text (--max_text_chars).",
            )
        if request.coverage is not None:
            try:
                self.classifier.check_coverage(request.coverage)
            except ValueError as exc:
                raise unprocessable("coverage", str(exc).replace("--coverage: ", "")) from None
        if request.text_pairs is None:
            if self.pairs:
                raise unprocessable(
                    "text_pairs",
                    "this is a sentence-pair model: give text_pairs, one second text per text.",
                )
            return list(request.texts)
        if not self.pairs:
            raise unprocessable(
                "text_pairs", "this model classifies single texts: leave text_pairs out."
            )
        if len(request.text_pairs) != len(request.texts):
            raise unprocessable(
                "text_pairs",
                f"{len(request.text_pairs)} text_pairs for {len(request.texts)} texts: give "
                "one second text per text.",
            )
        long = [i for i, t in enumerate(request.text_pairs) if len(t) > limits.max_text_chars]
        if long:
            raise unprocessable(
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
            "long_text": dataclasses.asdict(c.long_text),
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
            "num_threads": self.num_threads,
        }
