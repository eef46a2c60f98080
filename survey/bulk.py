"""Bulk classification of a survey on Dask distributed, written as partitioned Parquet.

Usage::

    summary = classify_survey(Path("spectra/"), Path("results.parquet"), workers=2)
    table = read_results(Path("results.parquet"))

The inputs (a folder, searched recursively for FITS names, or a text file listing one path
per line) are sorted and cut into partitions of ``partition_size`` files. Each partition is
one Dask task: a worker reads and preprocesses its files (:func:`models.prepare.prepare_paths`),
predicts them in large batches and writes ``OUTPUT/part-<digest>.parquet`` (written as a
hidden ``.part`` file, then renamed), whose digest is a hash of the partition's file list.
Columns: ``file`` (absolute path), ``task``, ``label``, ``probabilities`` (map label ->
probability), ``model`` (bundle id, i.e. the model version), ``warnings`` and ``error``
(set, with the other columns null, when a file could not be classified).

Workers are processes started with ``spawn`` (JAX's threads do not survive ``fork``), one
thread each. Each worker loads the bundles once: the :class:`PredictorPlugin` registered on
the cluster holds the predictors, loaded by the first task that needs them. With
``scheduler`` the work goes to an existing cluster, whose workers must see the same paths
(input, output, bundles) and have this package installed.

A re-run skips every file already present in the output (classified or failed). Files left
to do are partitioned the same way, so after an interruption the same partitions, with the
same names and results, are redone. An unreadable file is a row with an ``error``; an
unexpected exception (a bug) fails its task and stops the run with the traceback, keeping
the parts already written.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import dask
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from distributed import Client, LocalCluster, WorkerPlugin, as_completed, get_worker
from tqdm.auto import tqdm

from models.prepare import keep_freed_memory, prepare_paths
from survey.otype import spectrum_files

DEFAULT_PARTITION_SIZE = 256
SURVEY_BUCKETS = (32, 256)
RESULT_SCHEMA = pa.schema(
    [
        ("file", pa.string()),
        ("task", pa.string()),
        ("label", pa.string()),
        ("probabilities", pa.map_(pa.string(), pa.float64())),
        ("model", pa.string()),
        ("warnings", pa.list_(pa.string())),
        ("error", pa.string()),
    ]
)


class PredictorPlugin(WorkerPlugin):
    """Holds one worker's predictors: bundles are loaded once, by the first task."""

    idempotent = True

    def __init__(self, bundles: dict[str, str], buckets: tuple[int, ...] = SURVEY_BUCKETS):
        self.bundles = dict(sorted(bundles.items()))
        self.buckets = tuple(buckets)
        digest = hashlib.sha1(repr((self.bundles, self.buckets)).encode()).hexdigest()[:12]
        self.name = f"skysort-predictors-{digest}"
        self._predictors: dict | None = None
        self._lock = threading.Lock()

    def __getstate__(self) -> dict:
        return {"bundles": self.bundles, "buckets": self.buckets, "name": self.name}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _predictors=None, _lock=threading.Lock())

    def predictors(self) -> dict:
        """task -> Predictor, loaded (and compiled) on the first call in this process."""
        with self._lock:
            if self._predictors is None:
                from models.bundle import load_bundle

                keep_freed_memory()  # batched preprocessing without page faults

                self._predictors = {
                    task: load_bundle(path, self.buckets) for task, path in self.bundles.items()
                }
            return self._predictors


@dataclass
class SurveySummary:
    """What :func:`classify_survey` did; ``seconds`` excludes cluster start and model loading."""

    output: str
    files: int
    skipped: int
    classified: int
    errors: int
    partitions: int
    workers: int
    startup_s: float
    seconds: float
    files_per_s: float


def list_inputs(source: Path) -> list[str]:
    """Absolute paths of the inputs: FITS files under a folder, or the lines of a list file.

    Lines of a list file are paths relative to the list's folder (or absolute); blank lines
    and ``#`` comments are ignored. Paths are made absolute without resolving symbolic
    links: a file is known by the path it was given under.
    """
    source = Path(source)
    if source.is_dir():
        paths = spectrum_files(source)
    elif source.is_file():
        lines = [line.split("#", 1)[0].strip() for line in source.read_text().splitlines()]
        paths = [source.parent / line for line in lines if line]
    else:
        raise FileNotFoundError(f"{source}: no such folder or list file")
    return sorted({os.path.abspath(p) for p in paths})


def done_files(output: Path) -> pa.Array:
    """The ``file`` column of every completed part in ``output`` (empty when none)."""
    parts = sorted(Path(output).glob("part-*.parquet"))
    if not parts:
        return pa.array([], pa.string())
    columns = [pq.read_table(part, columns=["file"]).column("file") for part in parts]
    return pa.chunked_array([chunk for c in columns for chunk in c.chunks], pa.string())


def read_results(output: Path) -> pa.Table:
    """All completed parts of an output folder as one table, sorted by file."""
    parts = sorted(Path(output).glob("part-*.parquet"))
    if not parts:
        return RESULT_SCHEMA.empty_table()
    return pa.concat_tables([pq.read_table(p, schema=RESULT_SCHEMA) for p in parts]).sort_by("file")


def partitions(files: list[str], size: int) -> Iterator[tuple[str, list[str]]]:
    """(name, files) chunks of a sorted list; the name is a digest of the chunk's paths."""
    for start in range(0, len(files), size):
        chunk = files[start : start + size]
        digest = hashlib.sha1("\n".join(chunk).encode()).hexdigest()[:16]
        yield f"part-{digest}", chunk


def results_table(results: list[dict]) -> pa.Table:
    """The ``classify`` objects of :func:`models.inference.predict_prepared` as a table."""
    rows = {name: [] for name in RESULT_SCHEMA.names}
    for result in results:
        for name in RESULT_SCHEMA.names:
            value = result.get(name)
            if name == "probabilities" and value is not None:
                value = list(value.items())
            rows[name].append(value)
    return pa.Table.from_pydict(rows, schema=RESULT_SCHEMA)


def classify_partition(files: list[str], output: Path, task: str, plugin: str, name: str) -> dict:
    """Worker side: classify one partition and write ``output/name.parquet`` atomically."""
    from models.inference import predict_prepared

    started = time.perf_counter()
    predictors = get_worker().plugins[plugin].predictors()
    preprocessors = {t: p.preprocess for t, p in predictors.items()}
    prepared = prepare_paths(files, preprocessors, task)
    table = results_table(predict_prepared(prepared, predictors))
    part = Path(output) / f".{name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.parquet.part"
    pq.write_table(table, part)
    os.replace(part, Path(output) / f"{name}.parquet")
    errors = sum(error is not None for error in table.column("error").to_pylist())
    return {
        "name": name,
        "files": len(files),
        "errors": errors,
        "worker_pid": os.getpid(),
        "seconds": time.perf_counter() - started,
    }


def _warm(plugin: str) -> int:
    get_worker().plugins[plugin].predictors()
    return os.getpid()


def local_cluster(workers: int) -> LocalCluster:
    """``workers`` spawned worker processes of one thread each, on 127.0.0.1, no dashboard."""
    with dask.config.set({"distributed.worker.multiprocessing-method": "spawn"}):
        return LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )


def start_predictors(client: Client, bundles: dict[str, str]) -> str:
    """Register the predictor plugin and load the bundles on every worker; returns its name."""
    plugin = PredictorPlugin(bundles)
    client.register_plugin(plugin)
    workers = list(client.nthreads())
    warm = [client.submit(_warm, plugin.name, workers=[w], pure=False) for w in workers]
    client.gather(warm)
    return plugin.name


def default_bundles() -> dict[str, str]:
    """task -> folder of the default bundles that exist (:mod:`models.inference`'s)."""
    from models.inference import default_bundle
    from models.prepare import IMAGE_TASKS, SPECTRUM_TASKS

    tasks = (*SPECTRUM_TASKS, *IMAGE_TASKS)
    return {t: str(default_bundle(t).resolve()) for t in tasks if default_bundle(t).is_dir()}


def _todo(files: list[str], output: Path) -> list[str]:
    """The files not yet in the output, in order."""
    if not files:
        return []
    done = done_files(output)
    if len(done) == 0:
        return files
    remaining = pc.invert(pc.is_in(pa.array(files, pa.string()), value_set=done.combine_chunks()))
    return pa.array(files, pa.string()).filter(remaining).to_pylist()


def _clean_stale_parts(output: Path, before: float) -> None:
    """Remove ``.part-*.parquet.part`` files older than ``before`` (a killed worker's)."""
    for stale in output.glob(".part-*.parquet.part"):
        if stale.stat().st_mtime < before:
            stale.unlink(missing_ok=True)


def classify_survey(
    source: Path,
    output: Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    client: Client | None = None,
    task: str = "auto",
    bundles: dict[str, str] | None = None,
    partition_size: int = DEFAULT_PARTITION_SIZE,
    progress: bool = True,
    on_partition: Callable[[dict], None] | None = None,
) -> SurveySummary:
    """Classify every input not yet in ``output`` on a Dask cluster.

    Args:
        source: a folder of spectra or a list file (see :func:`list_inputs`).
        output: the Parquet folder (created; completed parts are kept and skipped).
        workers: processes of the local cluster started when neither ``scheduler`` nor
            ``client`` is given.
        scheduler: address of an existing scheduler, e.g. ``tcp://10.0.0.5:8786``.
        client: an existing client (its cluster is left running).
        task: ``auto`` (by content) or a task name, as for ``skysort classify``.
        bundles: task -> bundle folder (default: the repository's default bundles).
        partition_size: files per task and per output part.
        progress: show a progress bar (files).
        on_partition: called with each finished partition's summary dict.
    """
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    run_started = time.time()
    files = list_inputs(source)
    todo = _todo(files, output)
    bundles = bundles or default_bundles()
    if not bundles:
        raise FileNotFoundError("no model bundle found; pass bundles or run `make models`")
    if not todo:
        return SurveySummary(str(output), len(files), len(files), 0, 0, 0, 0, 0.0, 0.0, 0.0)
    started = time.perf_counter()
    with _connected(workers, scheduler, client) as active:
        n_workers = len(active.nthreads())
        plugin = start_predictors(active, bundles)
        startup = time.perf_counter() - started
        bar = tqdm(total=len(todo), unit="file", desc="classifying", disable=not progress)
        window = 2 * n_workers + 2
        counts = _run_partitions(
            active,
            partitions(todo, partition_size),
            (output, task, plugin),
            window,
            bar,
            on_partition,
        )
        seconds = time.perf_counter() - started - startup
    _clean_stale_parts(output, run_started)
    return SurveySummary(
        output=str(output),
        files=len(files),
        skipped=len(files) - len(todo),
        classified=counts["files"] - counts["errors"],
        errors=counts["errors"],
        partitions=counts["partitions"],
        workers=n_workers,
        startup_s=round(startup, 3),
        seconds=round(seconds, 3),
        files_per_s=round(counts["files"] / seconds, 2) if seconds > 0 else 0.0,
    )


@contextmanager
def _connected(workers: int, scheduler: str | None, client: Client | None) -> Iterator[Client]:
    """The given client, or one to ``scheduler``, or to a new local cluster (closed after)."""
    if client is not None:
        yield client
        return
    cluster = local_cluster(workers) if scheduler is None else None
    try:
        with Client(cluster if cluster is not None else scheduler) as own:
            yield own
    finally:
        if cluster is not None:
            cluster.close()


def _run_partitions(client, queue, arguments, window, bar, on_partition) -> dict[str, int]:
    """Submit ``(name, files)`` partitions, at most ``window`` in flight; cancel on error."""
    counts = {"files": 0, "errors": 0, "partitions": 0}
    running = as_completed()
    pending = set()

    def submit_next() -> None:
        for name, chunk in queue:
            future = client.submit(
                classify_partition, chunk, *arguments, name=name, key=f"classify-{name}"
            )
            pending.add(future)
            running.add(future)
            return

    try:
        for _ in range(window):
            submit_next()
        for future in running:
            done = future.result()
            pending.discard(future)
            counts["files"] += done["files"]
            counts["errors"] += done["errors"]
            counts["partitions"] += 1
            bar.update(done["files"])
            if on_partition is not None:
                on_partition(done)
            submit_next()
    finally:
        bar.close()
        client.cancel(list(pending))
    return counts
