"""scripts/batch_cost.py charges every step of a batch request, on real files."""

from __future__ import annotations

import argparse
import asyncio

import pytest


@pytest.fixture(scope="module")
def batch_cost(load_script):
    return load_script("batch_cost")


@pytest.mark.parametrize("processes", [1, 2])
def test_every_stage_is_charged(batch_cost, processes):
    args = argparse.Namespace(files=48, requests=2, processes=processes, json=None)
    report = asyncio.run(batch_cost._measure(args))
    stages = report["cpu_ms_per_spectrum"]
    assert set(stages) == {
        "parse", "expand", "prepare, preparation processes", "prepare, worker side",
        "predict", "results + JSON",
    }  # fmt: skip
    assert stages["predict"] > 0 and stages["parse"] > 0
    assert (stages["prepare, preparation processes"] > 0) == (processes > 1)
    assert report["total_cpu_ms_per_spectrum"] == pytest.approx(sum(stages.values()))
