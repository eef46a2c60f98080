"""Preparation of batch uploads: shared blocks for the worker processes, and the pipe."""

import asyncio
from multiprocessing.shared_memory import SharedMemory

import numpy as np
import pytest

from models.preprocess import StellarPreprocess
from serving import preparing
from serving.preparing import PreparePool, SharedBlocks, prepare_shared, prepare_uploads


@pytest.fixture(scope="module")
def uploads(data_dir):
    paths = sorted((data_dir / "lamost").rglob("*.fits"))[:20]
    inputs = [(p.name, p.read_bytes()) for p in paths]
    inputs.insert(3, ("cut.fits", inputs[0][1][:9000]))
    return inputs


def _same(one, other):
    assert [p.file for p in one] == [p.file for p in other]
    for a, b in zip(one, other, strict=True):
        assert a.error == b.error and a.warnings == b.warnings and a.task == b.task
        if a.features is None:
            assert b.features is None
        else:
            np.testing.assert_array_equal(a.features, b.features)


def test_blocks_are_reused_and_bounded():
    blocks = SharedBlocks(keep=2, keep_bytes=16 << 20)
    try:
        first = blocks.take(5 << 20)
        assert first.size == 8 << 20  # rounded up to a power of two
        blocks.give_back(first)
        again = blocks.take(3 << 20)
        assert again.name == first.name  # the idle block is reused, not a new one
        other = blocks.take(1)
        assert other.size == 4 << 20 and other.name != again.name
        big = blocks.take(9 << 20)
        for block in (again, other, big):
            blocks.give_back(block)
        # 8 + 4 MiB kept; the 16 MiB block would pass keep_bytes and is unlinked
        assert sorted(b.size for b in blocks._idle) == [4 << 20, 8 << 20]
        with pytest.raises(FileNotFoundError):
            SharedMemory(name=big.name)
    finally:
        blocks.close()
    with pytest.raises(FileNotFoundError):
        SharedMemory(name=first.name)


def test_prepare_shared_equals_prepare_uploads(uploads):
    preprocessors = {"stellar": StellarPreprocess()}
    blocks = SharedBlocks()
    block = blocks.take(sum(len(data) for _, data in uploads))
    try:
        placement = preparing._fill(block, uploads)
        shared = prepare_shared(block.name, placement, preprocessors, "auto")
        # the block stays mapped for the next batch, which may overwrite it
        assert block.name in preparing._ATTACHED
        _same(shared, prepare_uploads(uploads, preprocessors, "auto"))
        assert shared[3].error.startswith("cut.fits: ")
        assert shared[0].features.shape == (1024, 2)
    finally:
        preparing._ATTACHED.pop(block.name).close()
        blocks.close()


@pytest.mark.parametrize("shared_memory", [True, False])
def test_pool_results_in_order_with_or_without_shared_memory(uploads, monkeypatch, shared_memory):
    """Where /dev/shm has no room, the chunks go to the processes by pipe, same results."""
    preprocessors = {"stellar": StellarPreprocess()}
    pool = PreparePool(processes=2, min_files=4)
    if not shared_memory:
        monkeypatch.setattr(pool._blocks, "take", lambda size: None)
    try:
        prepared = asyncio.run(pool.prepare(uploads, preprocessors, "auto"))
        assert len(pool._blocks._idle) == (2 if shared_memory else 0)
    finally:
        pool.close()
    _same(prepared, prepare_uploads(uploads, preprocessors, "auto"))
