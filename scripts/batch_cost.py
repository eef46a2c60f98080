"""CPU cost of one /classify_batch request, stage by stage, without HTTP (``make batch-cost``).

Usage: ``python scripts/batch_cost.py [--files 100] [--requests 30] [--processes 2] [--json OUT]``

Runs the batch endpoint's own steps on a multipart body of real LAMOST FITS files from
data/, one request after the other in this process, and charges CPU time (not wall time)
to each step:

- ``parse``: Starlette's multipart parser, as the endpoint uses it (64 KiB chunks);
- ``expand``: archive sniffing and unpacking (``serving.uploads.expand_uploads``);
- ``prepare, worker side``: handing the files to the preparation processes and taking the
  features back (pickling, pipes, the executor's threads);
- ``prepare, preparation processes``: reading and preprocessing, in those processes;
- ``predict``: the jitted stellar network, XLA's threads included;
- ``results + JSON``: result objects and the JSON body.

The sum is what the server cannot avoid per spectrum; the load test
(``scripts/load_test.py``) measures the whole server, HTTP and scheduling included, and
the difference between the two is the cost of serving. Figures are ms of CPU per spectrum.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path

import httpx
import numpy as np
import psutil
from starlette.datastructures import Headers
from starlette.responses import JSONResponse

REPO = Path(__file__).resolve().parents[1]
CHUNK = 65536  # what uvicorn hands the app at a time, about


def _body(files: list[Path]) -> tuple[bytes, Headers]:
    request = httpx.Request(
        "POST", "http://batch/", files=[("files", (f.name, f.read_bytes())) for f in files]
    )
    body = request.read()
    headers = Headers(raw=[(k.lower().encode(), v.encode()) for k, v in request.headers.items()])
    return body, headers


def _cpu_seconds(processes: list[psutil.Process]) -> float:
    total = 0.0
    for process in processes:
        times = process.cpu_times()
        total += times.user + times.system
    return total


async def _measure(args: argparse.Namespace) -> dict:
    from models.inference import load_default_predictors, result_object
    from models.prepare import keep_freed_memory
    from serving.preparing import PreparePool
    from serving.service import _InMemoryMultiPartParser
    from serving.uploads import expand_uploads

    predictors = load_default_predictors()
    stellar = predictors["stellar"]
    preprocessors = {task: p.preprocess for task, p in predictors.items()}
    sources = sorted((REPO / "data" / "lamost").rglob("*.fits"))
    files = [sources[i % len(sources)] for i in range(args.files)]
    body, headers = _body(files)
    keep_freed_memory()  # as the service's workers do
    pool = PreparePool(args.processes)
    pool.warm()
    # the preparation processes (and multiprocessing's idle resource tracker), listed once:
    # walking /proc inside the timed steps would be charged to them
    children = psutil.Process().children(recursive=True)
    cost: dict[str, float] = {}

    def charge(stage: str, since: float) -> float:
        now = time.process_time()
        cost[stage] = cost.get(stage, 0.0) + now - since
        return now

    async def stream():
        for start in range(0, len(body), CHUNK):
            yield body[start : start + CHUNK]

    async def one_request() -> None:
        clock = time.process_time()
        parser = _InMemoryMultiPartParser(headers, stream(), max_files=10**4, max_fields=16)
        form = await parser.parse()
        uploads = [(part.filename, await part.read()) for part in form.getlist("files")]
        await form.close()
        clock = charge("parse", clock)
        inputs = expand_uploads(uploads, 10**4, 1 << 30)
        clock = charge("expand", clock)
        helpers = _cpu_seconds(children)
        prepared = await pool.prepare(inputs, preprocessors, "auto")
        cost["prepare, preparation processes"] = (
            cost.get("prepare, preparation processes", 0.0) + _cpu_seconds(children) - helpers
        )
        clock = charge("prepare, worker side", clock)
        good = [p for p in prepared if p.error is None]
        probabilities = stellar.predict(np.stack([p.features for p in good]))
        clock = charge("predict", clock)
        pairs = zip(good, probabilities, strict=True)
        results = [result_object(p, stellar, row) for p, row in pairs]
        JSONResponse(results)  # renders the body
        charge("results + JSON", clock)

    try:
        for _ in range(3):  # warm: first batches pay for imports and caches
            await one_request()
        cost.clear()
        started = time.perf_counter()
        for _ in range(args.requests):
            await one_request()
        wall = time.perf_counter() - started
    finally:
        pool.close()
    spectra = args.files * args.requests
    stages = {stage: 1e3 * seconds / spectra for stage, seconds in cost.items()}
    return {
        "files_per_request": args.files,
        "requests": args.requests,
        "processes": args.processes,
        "cpu_ms_per_spectrum": stages,
        "total_cpu_ms_per_spectrum": sum(stages.values()),
        "sequential_wall_ms_per_spectrum": 1e3 * wall / spectra,
        "cpu_count": psutil.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100, help="LAMOST files per request")
    parser.add_argument("--requests", type=int, default=30, help="requests measured")
    parser.add_argument("--processes", type=int, default=2, help="SKYSORT_BATCH_PROCESSES")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    report = asyncio.run(_measure(args))
    print(f"{'stage':34s} CPU ms per spectrum")
    for stage, ms in report["cpu_ms_per_spectrum"].items():
        print(f"{stage:34s} {ms:7.3f}")
    print(f"{'total':34s} {report['total_cpu_ms_per_spectrum']:7.3f}")
    budget = 1e3 * report["cpu_count"] / report["total_cpu_ms_per_spectrum"]
    print(f"ceiling on {report['cpu_count']} cores without HTTP: {budget:,.0f} spectra/s")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
