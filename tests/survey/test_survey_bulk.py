"""Bulk classification on a local Dask cluster: 1 vs 2 workers, errors, resume, CLI.

One cluster serves the whole module (a worker start with JAX takes seconds): it runs with
two workers, is scaled down to one, and the later tests use that one worker.
The inputs are the repository's 125 real LAMOST FITS, plus a truncated copy and a path
that does not exist, listed in a list file.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from distributed import Client

from survey.bulk import (
    classify_survey,
    done_files,
    list_inputs,
    local_cluster,
    read_results,
)
from survey.cli import main

PARTITION = 16


class Interrupted(Exception):
    """Raised by a progress callback to cut a run short."""


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory) -> Path:
    """A list file: the real LAMOST FITS, one truncated copy, one missing path."""
    folder = tmp_path_factory.mktemp("inputs")
    real = sorted((data_dir / "lamost").rglob("*.fits*"))
    truncated = folder / "truncated.fits"
    truncated.write_bytes(real[0].read_bytes()[:4000])
    listing = folder / "inputs.txt"
    lines = [str(p) for p in real] + ["truncated.fits", "# a comment", "", "missing.fits"]
    listing.write_text("\n".join(lines) + "\n")
    return listing


@pytest.fixture(scope="module")
def cluster():
    cluster = local_cluster(2)
    yield cluster
    cluster.close()


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster) as client:
        yield client


def _wait_for_workers(client: Client, n: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while len(client.nthreads()) != n:
        assert time.monotonic() < deadline, f"cluster did not reach {n} workers"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def runs(cluster, client, inputs, tmp_path_factory) -> dict:
    """The same inputs classified with 2 workers, then (scaled down) with 1 worker."""
    out = tmp_path_factory.mktemp("runs")
    runs = {}
    for n in (2, 1):
        cluster.scale(n)
        _wait_for_workers(client, n)
        pids: list[int] = []
        summary = classify_survey(
            inputs,
            out / f"workers{n}",
            client=client,
            partition_size=PARTITION,
            progress=False,
            on_partition=lambda done, pids=pids: pids.append(done["worker_pid"]),
        )
        runs[n] = {"summary": summary, "pids": pids, "table": read_results(out / f"workers{n}")}
    return runs


def test_one_and_two_workers_give_identical_results(runs):
    two, one = runs[2], runs[1]
    assert len(set(two["pids"])) == 2, "both workers should have classified partitions"
    assert len(set(one["pids"])) == 1
    assert two["summary"].workers == 2 and one["summary"].workers == 1
    assert two["summary"].files == 127 and two["summary"].partitions == 8
    assert two["table"].num_rows == 127
    assert two["table"].to_pylist() == one["table"].to_pylist()


def test_rows_hold_labels_models_and_errors(runs, stellar_bundle):
    table = runs[1]["table"]
    assert runs[1]["summary"].classified == 125 and runs[1]["summary"].errors == 2
    rows = {Path(r["file"]).name: r for r in table.to_pylist()}
    card = json.loads((stellar_bundle / "bundle.json").read_text())
    g_star = rows["spec-58397-EG014118N254444M01_sp03-031.fits"]
    assert g_star["task"] == "stellar" and g_star["model"] == card["bundle_id"]
    assert [label for label, _ in g_star["probabilities"]] == card["labels"]
    assert sum(p for _, p in g_star["probabilities"]) == pytest.approx(1.0, abs=1e-4)
    best = max(g_star["probabilities"], key=lambda item: item[1])[0]
    assert g_star["label"] == best and g_star["error"] is None
    assert "truncated" in rows["truncated.fits"]["error"]
    assert rows["truncated.fits"]["label"] is None
    assert rows["missing.fits"]["error"] == "missing.fits: file not found"
    labels = [r["label"] for r in table.to_pylist() if r["label"]]
    assert set(labels) <= set(card["labels"]) and len(set(labels)) >= 4


def test_resume_after_an_interrupted_run(runs, client, inputs, tmp_path):
    reference = runs[1]["table"]
    out = tmp_path / "results.parquet"
    # small partitions (16 of them), so that the tasks already running when the third one
    # finishes cannot complete the whole run however fast the machine is
    size = PARTITION // 2
    finished: list[str] = []

    def interrupt(done: dict) -> None:
        finished.append(done["name"])
        if len(finished) == 3:
            raise Interrupted

    with pytest.raises(Interrupted):
        classify_survey(
            inputs,
            out,
            client=client,
            partition_size=size,
            progress=False,
            on_partition=interrupt,
        )
    _wait_until_idle(client, out)
    parts = sorted(out.glob("part-*.parquet"))
    assert 3 <= len(parts) < 16
    for part in parts:
        assert pq.read_table(part).num_rows in (size, 127 % size)
    done_before = len(done_files(out))
    summary = classify_survey(inputs, out, client=client, partition_size=size, progress=False)
    assert summary.skipped == done_before
    assert summary.skipped + summary.classified + summary.errors == 127
    resumed = read_results(out)
    assert len(set(resumed.column("file").to_pylist())) == resumed.num_rows == 127
    assert resumed.to_pylist() == reference.to_pylist()
    assert not list(out.glob(".*"))
    again = classify_survey(inputs, out, client=client, progress=False)
    assert (again.skipped, again.classified, again.partitions) == (127, 0, 0)


def _wait_until_idle(client: Client, out: Path, timeout_s: float = 30.0) -> None:
    """Let tasks still running after the interruption finish (their parts are written).

    A cancelled task that is already running on a worker is no longer listed by the
    scheduler but still writes its part, so the parts must also stop changing: the same
    set for a second, with no half-written ``.part`` file.
    """
    deadline = time.monotonic() + timeout_s
    while any(client.processing().values()):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    seen = None
    while True:
        current = sorted(p.name for p in out.iterdir()) if out.exists() else []
        if current == seen and not any(name.startswith(".") for name in current):
            return
        assert time.monotonic() < deadline
        seen = current
        time.sleep(1.0)


def test_list_inputs_from_folder_and_list(data_dir, inputs):
    from_folder = list_inputs(data_dir / "lamost")
    assert len(from_folder) == 125
    assert all(Path(p).is_absolute() for p in from_folder)
    from_list = list_inputs(inputs)
    assert len(from_list) == 127
    assert set(from_folder) < set(from_list)
    assert str(inputs.parent / "missing.fits") in from_list


def test_cli_on_an_existing_scheduler(runs, cluster, data_dir, tmp_path, capsys):
    out = tmp_path / "cli.parquet"
    argv = ["classify-survey", "--input", str(data_dir / "lamost" / "dr2_spectraml")]
    argv += ["--output", str(out), "--scheduler", cluster.scheduler_address, "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["files"], summary["classified"], summary["errors"]) == (16, 16, 0)
    expected = {r["file"]: r["label"] for r in runs[1]["table"].to_pylist()}
    for row in read_results(out).to_pylist():
        assert row["label"] == expected[row["file"]]
