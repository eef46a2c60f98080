"""Survey-scale figures, side by side in one run: catalogue split and bulk classification.

Usage: ``python scripts/bench_survey.py [--rows 10000000] [--files 4096] [--json OUT]``

1. Catalogue: the real DR1 extract (3,165 rows) is scaled up to ``--rows`` by repeating its
   rows, copy k getting ``obsid + k * 10**8`` so obsids stay unique (every other value is
   real, repeated), written pipe-separated like LAMOST's own catalogues. The split and a
   stratified sample then run each in a child process, whose peak resident memory comes
   from ``os.wait4`` (getrusage of that child), next to Arrow's pool peak and tracemalloc's
   peak of Python objects.
2. Bulk classification: ``--files`` symbolic links cycling over the repository's real
   LAMOST FITS, classified by local Dask clusters of 1 and 2 workers in the order
   1, 2, 2, 1 (drift on a shared machine cancels out). Throughput excludes cluster start
   and model loading (reported apart). The two outputs must be identical. Before each run a
   pure-Python loop in as many processes measures what the machine gives (CPU control).
3. An estimate of the workers needed to classify LAMOST DR10 (~11 million spectra) in one
   day, from the per-worker rate with both cores busy, with and without the cost of gzip
   (DR10 serves ``.fits.gz``), measured here as a read+preprocess ratio on gzipped copies.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

EXTRACT = REPO / "data" / "lamost" / "dr1_catalog_extract" / "my_data3.csv"
DR10_SPECTRA = 11_000_000
DAY_S = 86_400


def load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def scaled_catalogue(target_rows: int, out: Path) -> dict:
    """Write the real extract repeated to >= ``target_rows`` rows, pipe-separated."""
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    started = time.perf_counter()
    table = pacsv.read_csv(EXTRACT)
    index = table.schema.get_field_index("obsid")
    copies = math.ceil(target_rows / table.num_rows)
    options = pacsv.WriteOptions(delimiter="|", quoting_style="none")
    with pacsv.CSVWriter(out, table.schema, write_options=options) as writer:
        for k in range(copies):
            obsid = pc.add(table.column("obsid"), k * 10**8)
            writer.write_table(table.set_column(index, "obsid", obsid))
    return {
        "rows": copies * table.num_rows,
        "copies_of_the_extract": copies,
        "bytes": out.stat().st_size,
        "write_s": round(time.perf_counter() - started, 1),
    }


def child(kind: str, catalogue: str, out: str) -> None:
    """Run in a child process: one catalogue tool, print its figures as JSON."""
    import tracemalloc

    import pyarrow as pa

    from survey.catalogue import sample_catalogue, split_catalogue

    tracemalloc.start()
    started = time.perf_counter()
    if kind == "split":
        summary = split_catalogue(Path(catalogue), Path(out))
        counts = summary.counts
    else:
        summary = sample_catalogue(Path(catalogue), Path(out), per_class=1000, seed=0)
        counts = summary.sampled
    seconds = time.perf_counter() - started
    print(
        json.dumps(
            {
                "rows": summary.rows,
                "seconds": round(seconds, 2),
                "rows_per_s": round(summary.rows / seconds),
                "counts": counts,
                "arrow_pool_peak_mb": round(pa.default_memory_pool().max_memory() / 2**20, 1),
                "python_tracemalloc_peak_mb": round(tracemalloc.get_traced_memory()[1] / 2**20, 1),
            }
        )
    )


def measured_child(kind: str, catalogue: Path, out: Path) -> dict:
    """Run :func:`child` in a new process; add its peak RSS (``os.wait4``)."""
    command = [sys.executable, __file__, "--child", kind, str(catalogue), str(out)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{kind} child failed with exit code {process.returncode}")
    figures = json.loads(stdout)
    figures["peak_rss_mb"] = round(usage.ru_maxrss / 1024, 1)  # Linux: KiB
    figures["load_after"] = load()
    return figures


def catalogue_figures(rows: int, workdir: Path, keep: bool) -> dict:
    catalogue = workdir / "scaled_catalogue.dat"
    figures = {"scaled": scaled_catalogue(rows, catalogue), "load_before": load()}
    figures["split"] = measured_child("split", catalogue, workdir / "split")
    figures["sample"] = measured_child("sample", catalogue, workdir / "sample")
    if not keep:
        catalogue.unlink()
    return figures


def bench_files(n: int, workdir: Path) -> Path:
    """``n`` symbolic links cycling over the real LAMOST FITS in data/lamost."""
    from survey.otype import spectrum_files

    sources = spectrum_files(REPO / "data" / "lamost")
    folder = workdir / "files"
    for i in range(n):
        link = folder / f"copy{i // len(sources):03d}" / sources[i % len(sources)].name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(sources[i % len(sources)])
    return folder


def one_bulk_run(workers: int, files: Path, out: Path) -> dict:
    from distributed import Client

    from survey.bulk import classify_survey, local_cluster

    started = time.perf_counter()
    cluster = local_cluster(workers)
    try:
        with Client(cluster) as client:
            summary = classify_survey(files, out, client=client, progress=False)
    finally:
        cluster.close()
    return {
        "workers": workers,
        "files": summary.files,
        "files_per_s": summary.files_per_s,
        "seconds": summary.seconds,
        "cluster_start_and_model_load_s": round(time.perf_counter() - started - summary.seconds, 1),
        "load_after": load(),
    }


def gzip_cost(n_files: int, workdir: Path) -> float:
    """Read+preprocess time of gzipped copies over plain ones (single process)."""
    from models.prepare import prepare
    from survey.otype import bundle_preprocess, spectrum_files

    preprocess, _ = bundle_preprocess(REPO / "bundles" / "stellar")
    plain = [p for p in spectrum_files(REPO / "data" / "lamost") if p.suffix == ".fits"]
    zipped = []
    for path in plain:
        target = workdir / "gz" / (path.name + ".gz")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(path.read_bytes()))
        zipped.append(target)
    timings = {}
    for name, paths in (("plain", plain), ("gzip", zipped), ("plain2", plain)):
        started = time.perf_counter()
        for i in range(n_files):
            prepare(paths[i % len(paths)], {"stellar": preprocess}, "stellar")
        timings[name] = time.perf_counter() - started
    return timings["gzip"] / ((timings["plain"] + timings["plain2"]) / 2)


def _burn(n: int) -> float:
    started = time.perf_counter()
    total = 0
    for i in range(n):
        total += i * i
    return time.perf_counter() - started


def burn_rate(processes: int, n: int = 20_000_000) -> float:
    """Pure-Python loop iterations/s of ``processes`` spawned processes (a CPU control).

    On an idle 2-core machine 2 processes give ~2x one; another job's threads lower that.
    Measured right before each bulk run, it is the ceiling to read the bulk speedup against.
    """
    import multiprocessing as mp

    with mp.get_context("spawn").Pool(processes) as pool:
        pool.map(_burn, [1000] * processes)
        started = time.perf_counter()
        pool.map(_burn, [n] * processes)
        return processes * n / (time.perf_counter() - started)


def bulk_figures(n_files: int, workdir: Path) -> dict:
    from survey.bulk import read_results

    files = bench_files(n_files, workdir)
    runs = []
    for i, workers in enumerate((1, 2, 2, 1)):
        control = burn_rate(workers)
        runs.append(one_bulk_run(workers, files, workdir / f"bulk{i}-w{workers}"))
        runs[-1]["cpu_control_loop_per_s"] = round(control)
        print(json.dumps(runs[-1]), file=sys.stderr)
    one = read_results(workdir / "bulk0-w1").to_pylist()
    two = read_results(workdir / "bulk1-w2").to_pylist()
    rate = {w: sum(r["files_per_s"] for r in runs if r["workers"] == w) / 2 for w in (1, 2)}
    burn = {w: sum(r["cpu_control_loop_per_s"] for r in runs if r["workers"] == w) for w in (1, 2)}
    return {
        "runs": runs,
        "files_per_s_1_worker": round(rate[1], 1),
        "files_per_s_2_workers": round(rate[2], 1),
        "speedup_2_over_1": round(rate[2] / rate[1], 2),
        "cpu_control_2_over_1": round(burn[2] / burn[1], 2),
        "identical_results_1_vs_2_workers": one == two,
        "gzip_read_cost_ratio": round(gzip_cost(300, workdir), 2),
    }


def dr10_estimate(bulk: dict) -> dict:
    """Workers (one core each) to classify DR10 in a day, from the measured rates.

    Two per-worker rates: one worker's (a core of its own, or nearly) and half the two-worker
    rate (both cores busy, here shared with other jobs: the pessimistic figure). Both are
    also divided by the measured gzip read cost, as DR10 serves ``.fits.gz``.
    """
    needed = DR10_SPECTRA / DAY_S
    rates = {
        "one_worker": bulk["files_per_s_1_worker"],
        "half_of_two_workers": bulk["files_per_s_2_workers"] / 2,
    }
    estimate = {"spectra": DR10_SPECTRA, "needed_files_per_s": round(needed, 1)}
    for name, rate in rates.items():
        gz_rate = rate / bulk["gzip_read_cost_ratio"]
        estimate[f"per_worker_files_per_s_{name}"] = round(rate, 1)
        estimate[f"workers_needed_{name}"] = math.ceil(needed / rate)
        estimate[f"workers_needed_{name}_gzip"] = math.ceil(needed / gz_rate)
    return estimate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="scaled catalogue rows")
    parser.add_argument("--files", type=int, default=4096, help="files per bulk run")
    parser.add_argument("--workdir", type=Path, help="scratch folder (default: a temp dir)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--skip-catalogue", action="store_true")
    parser.add_argument("--skip-bulk", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="skysort-bench-survey-"))
    workdir.mkdir(parents=True, exist_ok=True)
    figures = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load": load()},
        "versions": {p: metadata.version(p) for p in ("pyarrow", "dask", "distributed", "jax")},
        "stellar_bundle": json.loads((REPO / "bundles/stellar/bundle.json").read_text())[
            "bundle_id"
        ],
    }
    try:
        if not args.skip_catalogue:
            figures["catalogue"] = catalogue_figures(args.rows, workdir, args.keep)
            print(json.dumps(figures["catalogue"]), file=sys.stderr)
        if not args.skip_bulk:
            figures["bulk"] = bulk_figures(args.files, workdir)
            figures["dr10_estimate"] = dr10_estimate(figures["bulk"])
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
    figures["machine"]["load_end"] = load()
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
