"""Dynamic batching: the texts of concurrent requests predicted in one forward pass.

Requests put their texts on a queue; one worker thread, the only one that touches the model,
takes the oldest request and adds the requests queued behind it until the batch holds
``max_batch_size`` texts or the oldest has waited ``max_wait_ms`` (the policy of NVIDIA Triton's
dynamic batcher: a size cap and a queue delay, 0 by default there and here: a batch holds the
requests that queued while the previous batch ran, so an idle model never waits). The model
then predicts the batch's texts sorted by length
(:meth:`~nlp_transfer.text.classifier.TextClassifier.predict_logits`), and each request gets its
own texts' results back through a future. With batching off, each request is a batch
of its own, still one at a time. The event loop never runs the model, so it keeps accepting
requests while a batch runs.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field


@dataclass
class Job:
    """One request's work: its texts (strings or ``(text, text_pair)`` tuples), its options and
    the future its results go to."""

    texts: Sequence
    options: dict = field(default_factory=dict)
    future: Future = field(default_factory=Future)
    enqueued: float = field(default_factory=time.monotonic)


class ShuttingDown(RuntimeError):
    """The batcher is stopping: no new work is accepted."""


_STOP = object()


class DynamicBatcher:
    """Groups queued requests into batches and runs them on one worker thread.

    Args:
        run_batch: Called on the worker thread with the jobs of a batch; returns one result per
            job, in order (a job's result is whatever its future should hold).
        max_batch_size: Texts per batch at most (a single request with more texts is a batch
            of its own).
        max_wait_ms: How long the oldest queued request may wait for others to join its batch
            (milliseconds; 0: only the requests already queued join).
        enabled: False: every request is a batch of its own (batching off).
        on_batch: Called after each batch with ``(texts in the batch, seconds it took)``
            (metrics).
    """

    def __init__(
        self,
        run_batch: Callable[[list[Job]], list],
        max_batch_size: int = 32,
        max_wait_ms: float = 0.0,
        enabled: bool = True,
        on_batch: Callable[[int, float], None] | None = None,
    ):
        if max_batch_size < 1:
            raise ValueError(f"--max_batch_size must be at least 1, got {max_batch_size}.")
        if max_wait_ms < 0:
            raise ValueError(f"--max_wait_ms must be 0 or more, got {max_wait_ms}.")
        self.run_batch = run_batch
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.enabled = enabled
        self.on_batch = on_batch
        self._queue: queue.Queue = queue.Queue()
        self._carried: deque[Job] = deque()  # taken from the queue but left for the next batch
        self._waiting_texts = 0
        self._lock = threading.Lock()
        self._stopping = False
        self._thread: threading.Thread | None = None

    @property
    def queue_depth(self) -> int:
        """Texts accepted and not yet in a running batch."""
        return self._waiting_texts

    def start(self) -> DynamicBatcher:
        """Start the worker thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="nlp-transfer-batcher")
            self._thread.daemon = True
            self._thread.start()
        return self

    def submit(self, texts: Sequence, **options) -> Future:
        """Queue one request's texts; the future resolves to its result.

        Raises:
            ShuttingDown: :meth:`stop` was called.
        """
        job = Job(list(texts), options)
        with self._lock:
            if self._stopping:
                raise ShuttingDown("The server is shutting down; send the request elsewhere.")
            self._waiting_texts += len(job.texts)
            self._queue.put(job)
        return job.future

    def stop(self, timeout: float | None = None) -> None:
        """Accept nothing more, finish every job already accepted, then end the worker."""
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
            self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)

    # --- the worker thread -------------------------------------------------------------------

    def _next(self, timeout: float | None):
        if self._carried:
            return self._carried.popleft()
        if timeout is not None and timeout <= 0:
            return self._queue.get_nowait()
        return self._queue.get(timeout=timeout)

    def _collect(self, first: Job) -> tuple[list[Job], bool]:
        """The batch that starts with ``first``, and whether the stop mark was reached."""
        batch, size = [first], len(first.texts)
        if not self.enabled:
            return batch, False
        deadline = first.enqueued + self.max_wait_s
        while size < self.max_batch_size:
            try:
                job = self._next(deadline - time.monotonic())
            except queue.Empty:
                break
            if job is _STOP:
                return batch, True
            if size + len(job.texts) > self.max_batch_size:
                self._carried.append(job)  # first in the next batch
                break
            batch.append(job)
            size += len(job.texts)
        return batch, False

    def _work(self) -> None:
        stop = False
        while not stop or self._carried:
            first = self._next(None)
            if first is _STOP:
                break
            batch, stop = self._collect(first)
            self._run(batch)

    def _run(self, batch: list[Job]) -> None:
        size = sum(len(job.texts) for job in batch)
        with self._lock:
            self._waiting_texts -= size
        start = time.perf_counter()
        try:
            results = self.run_batch(batch)
        except Exception as exc:  # every request of the batch gets the error
            for job in batch:
                job.future.set_exception(exc)
        else:
            for job, result in zip(batch, results, strict=True):
                job.future.set_result(result)
        if self.on_batch is not None:
            self.on_batch(size, time.perf_counter() - start)
