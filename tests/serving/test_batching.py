"""The micro-batcher: merging under load, order of results, overload and errors."""

import asyncio
import threading
import time

import numpy as np
import pytest

from serving.batching import MicroBatcher, Overloaded


class SlowNetwork:
    """A deterministic 'network' (row sums) that takes a while, recording batch sizes."""

    def __init__(self, seconds: float = 0.02):
        self.seconds = seconds
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def __call__(self, features: np.ndarray) -> np.ndarray:
        time.sleep(self.seconds)
        with self.lock:
            self.calls.append(len(features))
        return np.stack([features.sum(axis=1), -features.sum(axis=1)], axis=1)


def test_concurrent_requests_are_merged_and_answered_in_order():
    network = SlowNetwork()
    batcher = MicroBatcher(network, max_batch_size=64, max_latency_s=5)

    async def main():
        rows = [np.full((1, 3), i, np.float32) for i in range(40)]
        return await asyncio.gather(*(batcher.predict(r) for r in rows))

    results = asyncio.run(main())
    assert [float(r[0, 0]) for r in results] == [3.0 * i for i in range(40)]
    assert sum(network.calls) == 40
    assert len(network.calls) < 40  # merged: the first call runs alone, the rest queue up
    assert max(network.calls) > 1


def test_batches_never_exceed_max_batch_size_but_big_jobs_run_alone():
    network = SlowNetwork(0.005)
    batcher = MicroBatcher(network, max_batch_size=8, max_latency_s=5)

    async def main():
        small = [batcher.predict(np.ones((3, 2), np.float32)) for _ in range(10)]
        big = batcher.predict(np.ones((20, 2), np.float32))
        return await asyncio.gather(*small, big)

    results = asyncio.run(main())
    assert [len(r) for r in results] == [3] * 10 + [20]
    assert all(n <= 8 for n in network.calls if n != 20)
    assert 20 in network.calls


def test_requests_over_the_latency_budget_are_refused():
    batcher = MicroBatcher(SlowNetwork(0.2), max_batch_size=1, max_latency_s=0.05)

    async def main():
        tasks = [batcher.predict(np.ones((1, 2), np.float32)) for _ in range(3)]
        return await asyncio.gather(*tasks, return_exceptions=True)

    results = asyncio.run(main())
    assert isinstance(results[0], np.ndarray)  # ran at once
    assert all(isinstance(r, Overloaded) for r in results[1:])
    assert "latency budget" in str(results[1])


def test_a_failing_network_fails_its_callers_and_the_next_batch_still_runs():
    calls = []

    def network(features):
        calls.append(len(features))
        if len(calls) == 1:
            raise ValueError("bad shape")
        return features

    batcher = MicroBatcher(network, max_batch_size=4, max_latency_s=5)

    async def main():
        first = await asyncio.gather(
            batcher.predict(np.ones((1, 2), np.float32)), return_exceptions=True
        )
        second = await batcher.predict(np.full((1, 2), 7, np.float32))
        return first[0], second

    first, second = asyncio.run(main())
    assert isinstance(first, ValueError)
    assert float(second[0, 0]) == 7.0


def test_on_batch_reports_rows():
    seen = []
    batcher = MicroBatcher(lambda f: f, max_batch_size=16, on_batch=seen.append)
    asyncio.run(batcher.predict(np.ones((5, 2), np.float32)))
    assert seen == [5]
    with pytest.raises(RuntimeError):  # closed executor refuses work
        batcher.close()
        batcher._executor.submit(print)
