"""Reading and preprocessing of the service's uploads, in a thread or in worker processes.

Usage::

    pool = PreparePool(processes=2)                  # spawned once per service worker
    prepared = await pool.prepare(inputs, preprocessors, "auto")   # [(name, bytes), ...]

A batch of spectra is CPU-bound Python (readers, resampling) that holds the GIL, so in one
process it uses one core however many threads run it. BentoML's worker processes share
the cores only across requests, and a client's keep-alive connection stays with one
worker: measured with the load test, one batch worker used 1.1 cores and the other 0.2.
Batches of at least ``min_files`` files are therefore split into ``processes`` contiguous
chunks prepared in parallel in worker processes (``spawn``, no JAX in them); smaller ones,
and every single-file request, are prepared in a thread as before, where shipping the
bytes to another process would cost more than it saves.

This module must stay free of JAX and BentoML imports: the worker processes import it.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path

import anyio

from models.prepare import Prepared, preparation_pool, prepare, prepare_many

logger = logging.getLogger("skysort.service")


def prepare_named(
    file: Path, name: str, preprocessors: dict, task: str, data: bytes | None = None
) -> Prepared:
    """``prepare`` an upload (a file stored under a temporary name, or its bytes in
    ``data``); results and errors name the client's file ``name``."""
    try:
        prepared = prepare(file, preprocessors, task, data)
    except Exception as error:
        prepared = _reader_fault(name, task, error)
    return _named(prepared, file, name)


def _reader_fault(name: str, task: str, error: Exception) -> Prepared:
    """A reader that fails with something other than its typed ReadError has met a file it
    does not know how to reject; the client still gets a 422 naming the file, and the log
    gets the traceback so that the reader can be fixed."""
    logger.warning(
        "reader fault",
        exc_info=(type(error), error, error.__traceback__),
        extra={"file": name, "task": task},
    )
    reason = f"cannot be read (the reader failed with {type(error).__name__})"
    return Prepared(file=name, task=None if task == "auto" else task, error=f"{name}: {reason}")


def _named(prepared: Prepared, file: Path, name: str) -> Prepared:
    prepared.file = name
    if prepared.error:
        prepared.error = prepared.error.replace(Path(file).name, name)
    return prepared


def prepare_uploads(
    inputs: list[tuple[str, bytes]], preprocessors: dict, task: str
) -> list[Prepared]:
    """Prepare in-memory uploads; each is named by its client name only (never opened).

    The spectra are preprocessed together (:func:`models.prepare.prepare_many`)."""
    names = {Path(name): name for name, _ in inputs}
    prepared = prepare_many(
        [(Path(name), data) for name, data in inputs],
        preprocessors,
        task,
        on_fault=lambda path, error: _reader_fault(names[path], task, error),
    )
    return [_named(p, Path(name), name) for p, (name, _) in zip(prepared, inputs, strict=True)]


def _ready() -> bool:
    return True


class PreparePool:
    """Worker processes that prepare the files of large batches in parallel."""

    def __init__(self, processes: int, min_files: int = 16):
        self.processes = processes
        self.min_files = max(min_files, processes)
        self._executor = preparation_pool(processes) if processes > 1 else None

    def warm(self) -> None:
        """Start every worker process now (imports take seconds), not on the first batch."""
        if self._executor is not None:
            for future in [self._executor.submit(_ready) for _ in range(self.processes)]:
                future.result()

    async def prepare(
        self, inputs: list[tuple[str, bytes]], preprocessors: dict, task: str
    ) -> list[Prepared]:
        """Prepared inputs, in order; in worker processes when the batch is large."""
        if self._executor is None or len(inputs) < self.min_files:
            return await anyio.to_thread.run_sync(prepare_uploads, inputs, preprocessors, task)
        size = -(-len(inputs) // self.processes)
        chunks = [inputs[start : start + size] for start in range(0, len(inputs), size)]
        loop = asyncio.get_running_loop()
        try:
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, prepare_uploads, c, preprocessors, task)
                    for c in chunks
                )
            )
        except BrokenProcessPool:
            # a worker process died (killed, or out of memory); start a new pool and
            # prepare this batch in a thread so that the request still gets its answer
            logger.error("preparation pool broken; restarting it", exc_info=True)
            self._executor = preparation_pool(self.processes)
            return await anyio.to_thread.run_sync(prepare_uploads, inputs, preprocessors, task)
        return [prepared for part in parts for prepared in part]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
