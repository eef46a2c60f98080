"""Adaptive micro-batching of predictions inside one service process.

Usage::

    batcher = MicroBatcher(predictor.predict, max_batch_size=256, max_latency_s=2.0)
    probabilities = await batcher.predict(features)   # (k, n_classes) for (k, *shape)

Requests that arrive while the network is busy queue up and go together in the next call,
so the batch grows with the load and a lone request is never held back waiting for
company. The Predictor pads every call to one of its compiled bucket sizes
(1/8/32/64/128/256), so no request waits for XLA. A request still queued after
``max_latency_s`` is refused with :class:`Overloaded` (the service answers 503 +
Retry-After) instead of hanging.

Why not BentoML's ``batchable=True``: BentoML batches only calls that arrive through its
HTTP layer (a batchable endpoint or a dependency service in another process). The
per-file endpoints read and preprocess an upload first, and a second process hop costs
more CPU per request than the network itself on a 2-core host.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np


class Overloaded(RuntimeError):
    """The request waited longer than the batching latency budget."""


@dataclass
class _Job:
    features: np.ndarray
    future: asyncio.Future
    enqueued: float


class MicroBatcher:
    """Merges concurrent ``predict`` calls of one network into few padded calls."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        max_batch_size: int = 256,
        max_latency_s: float = 2.0,
        on_batch: Callable[[int], None] | None = None,
    ):
        """
        Args:
            predict: features (N, *shape) -> probabilities (N, n_classes); thread-safe.
            max_batch_size: most rows per call (a larger single request runs alone).
            max_latency_s: queueing budget after which a request gets :class:`Overloaded`.
            on_batch: called with the row count of every call (metrics).
        """
        self._predict = predict
        self.max_batch_size = max_batch_size
        self.max_latency_s = max_latency_s
        self._on_batch = on_batch
        self._pending: deque[_Job] = deque()
        self._drainer: asyncio.Task | None = None
        # one thread: calls into XLA never compete with each other for the cores
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="skysort-predict")

    @property
    def queued(self) -> int:
        return len(self._pending)

    async def predict(self, features: np.ndarray) -> np.ndarray:
        """Probabilities for ``features`` (k, *shape), computed together with other callers."""
        loop = asyncio.get_running_loop()
        job = _Job(np.asarray(features, np.float32), loop.create_future(), time.monotonic())
        self._pending.append(job)
        if self._drainer is None or self._drainer.done():
            self._drainer = loop.create_task(self._drain())
        return await job.future

    def _take(self) -> list[_Job]:
        """Jobs for the next call: the oldest first, up to ``max_batch_size`` rows."""
        jobs, rows = [], 0
        now = time.monotonic()
        while self._pending:
            job = self._pending[0]
            if job.future.done():  # cancelled by a timeout or a closed connection
                self._pending.popleft()
                continue
            if now - job.enqueued > self.max_latency_s:
                self._pending.popleft()
                job.future.set_exception(
                    Overloaded(f"queued {now - job.enqueued:.1f} s, over the latency budget")
                )
                continue
            if jobs and rows + len(job.features) > self.max_batch_size:
                break
            jobs.append(self._pending.popleft())
            rows += len(job.features)
        return jobs

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._pending:
            jobs = self._take()
            if not jobs:
                continue
            batch = np.concatenate([job.features for job in jobs])
            try:
                probabilities = await loop.run_in_executor(self._executor, self._predict, batch)
            except Exception as error:  # handed to every caller of this batch, not swallowed
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
                continue
            if self._on_batch is not None:
                self._on_batch(len(batch))
            start = 0
            for job in jobs:
                stop = start + len(job.features)
                if not job.future.done():
                    job.future.set_result(probabilities[start:stop])
                start = stop

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
