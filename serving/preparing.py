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

The uploads reach the worker processes through blocks of shared memory that each pool
keeps and reuses (:class:`SharedBlocks`), not through the executor's pipe: pickling a
chunk's few MB and pushing them through a pipe cost 14-16 ms of CPU per 100 LAMOST files,
against 1.8 ms for copying them into a block the worker process has already mapped (a
two-process micro-benchmark; ``scripts/batch_cost.py`` shows the worker's side halved). A
fresh block per batch, tried in session 5, page-faulted in both processes and gained
nothing. Where ``/dev/shm`` has no room (64 MiB in a default
Docker container) the bytes go by pipe as before.

This module must stay free of JAX and BentoML imports: the worker processes import it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import OrderedDict
from concurrent.futures.process import BrokenProcessPool
from multiprocessing.shared_memory import SharedMemory
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


#: (client name, offset, size) of each upload of a chunk inside a shared block
Placement = list[tuple[str, int, int]]

#: shared blocks a worker process keeps mapped (the pools reuse a handful of blocks)
_ATTACHED: OrderedDict[str, SharedMemory] = OrderedDict()
_ATTACHED_MAX = 6


def prepare_shared(
    block: str, placement: Placement, preprocessors: dict, task: str
) -> list[Prepared]:
    """:func:`prepare_uploads` of uploads stored in the shared block named ``block``.

    Runs in a worker process, which keeps the block mapped for the next batch: mapping it
    anew would page-fault every page again.
    """
    shared = _ATTACHED.pop(block, None) or SharedMemory(name=block)
    _ATTACHED[block] = shared
    while len(_ATTACHED) > _ATTACHED_MAX:
        _ATTACHED.popitem(last=False)[1].close()
    view = shared.buf
    try:
        inputs = [(name, bytes(view[start : start + size])) for name, start, size in placement]
    finally:
        del view  # no exported buffer may outlive close()
    return prepare_uploads(inputs, preprocessors, task)


class SharedBlocks:
    """Shared-memory blocks for handing uploads to worker processes, kept for reuse.

    A block is taken for one chunk of one batch (``take``) and given back when the
    chunk is prepared (``give_back``). Up to ``keep`` idle blocks, ``keep_bytes`` in
    all, are kept; others are unlinked. Sizes are rounded up to a power of two from
    4 MiB, so that batches of similar size share blocks. Only the event loop's thread
    calls ``take`` and ``give_back``.
    """

    def __init__(self, keep: int = 4, keep_bytes: int = 64 << 20):
        self.keep, self.keep_bytes = keep, keep_bytes
        self._idle: list[SharedMemory] = []

    def take(self, size: int) -> SharedMemory | None:
        """An idle block of at least ``size`` bytes, or a new one; None when ``/dev/shm``
        cannot hold it."""
        fitting = [block for block in self._idle if block.size >= size]
        if fitting:
            block = min(fitting, key=lambda b: b.size)
            self._idle.remove(block)
            return block
        rounded = max(4 << 20, 1 << (max(size, 1) - 1).bit_length())
        try:
            block = SharedMemory(create=True, size=rounded)
        except OSError:
            return None
        try:
            if hasattr(os, "posix_fallocate"):  # ENOSPC now rather than SIGBUS later
                os.posix_fallocate(block._fd, 0, rounded)  # noqa: SLF001
        except OSError:
            _unlink(block)
            return None
        return block

    def give_back(self, block: SharedMemory) -> None:
        idle_bytes = sum(b.size for b in self._idle) + block.size
        if len(self._idle) < self.keep and idle_bytes <= self.keep_bytes:
            self._idle.append(block)
        else:
            _unlink(block)

    def close(self) -> None:
        for block in self._idle:
            _unlink(block)
        self._idle.clear()


def _unlink(block: SharedMemory) -> None:
    block.close()
    block.unlink()


def _fill(block: SharedMemory, inputs: list[tuple[str, bytes]]) -> Placement:
    placement, offset, view = [], 0, block.buf
    try:
        for name, data in inputs:
            view[offset : offset + len(data)] = data
            placement.append((name, offset, len(data)))
            offset += len(data)
    finally:
        del view
    return placement


def _ready() -> bool:
    return True


class PreparePool:
    """Worker processes that prepare the files of large batches in parallel."""

    def __init__(self, processes: int, min_files: int = 16):
        self.processes = processes
        self.min_files = max(min_files, processes)
        self._executor = preparation_pool(processes) if processes > 1 else None
        self._blocks = SharedBlocks(keep=2 * processes)

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
        blocks = [self._blocks.take(sum(len(data) for _, data in c)) for c in chunks]
        loop = asyncio.get_running_loop()
        try:
            calls = await anyio.to_thread.run_sync(_calls, chunks, blocks)
            parts = await asyncio.gather(
                *(
                    loop.run_in_executor(self._executor, *call, preprocessors, task)
                    for call in calls
                )
            )
        except BrokenProcessPool:
            # a worker process died (killed, or out of memory); start a new pool and
            # prepare this batch in a thread so that the request still gets its answer
            logger.error("preparation pool broken; restarting it", exc_info=True)
            self._executor = preparation_pool(self.processes)
            return await anyio.to_thread.run_sync(prepare_uploads, inputs, preprocessors, task)
        finally:
            for block in blocks:
                if block is not None:
                    self._blocks.give_back(block)
        return [prepared for part in parts for prepared in part]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._blocks.close()


def _calls(chunks: list, blocks: list[SharedMemory | None]) -> list[tuple]:
    """The executor call of each chunk: through its shared block, or by pipe without one."""
    return [
        (prepare_uploads, chunk)
        if block is None
        else (prepare_shared, block.name, _fill(block, chunk))
        for chunk, block in zip(chunks, blocks, strict=True)
    ]
