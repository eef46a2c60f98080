"""Throughput of the stellar path, side by side in one run (``make bench``).

Usage: ``python scripts/bench_stellar.py [--bundle bundles/stellar] [--files N] [--json OUT]``

Prints FITS files/s for read+preprocess (file by file, and batched as the batch endpoint
and ``classify`` do it), spectra/s for the jitted predictor at batch 1 and
256, and files/s for the whole ``classify`` path (read, preprocess, predict, JSON objects),
all on the real LAMOST files in data/ (cycled to reach ``--files``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from models.bundle import load_bundle
from models.inference import classify_files, preparation_pool
from models.io import read_spectrum
from models.prepare import keep_freed_memory

REPO = Path(__file__).resolve().parents[1]


def _rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def timed(function, repeat: int = 3) -> float:
    """Best wall time of ``repeat`` calls (the machine is shared: best is least disturbed)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=str(REPO / "bundles" / "stellar"))
    parser.add_argument("--files", type=int, default=1024)
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    sources = sorted((REPO / "data" / "lamost" / "dr1_learninglamost").glob("*.fits"))
    files = [sources[i % len(sources)] for i in range(args.files)]
    predictor = load_bundle(args.bundle)
    pre = predictor.preprocess
    keep_freed_memory()  # as `skysort classify`, the service and the survey workers do

    def read_only():
        for f in files:
            read_spectrum(f)

    def read_preprocess():
        for f in files:
            pre.apply(read_spectrum(f))

    def read_preprocess_batched():
        for i in range(0, len(files), 128):
            pre.apply_many([read_spectrum(f) for f in files[i : i + 128]])

    def classify(pool):
        for i in range(0, len(files), 1024):
            classify_files(files[i : i + 1024], {"stellar": predictor}, pool=pool)

    features = np.stack([pre.apply(read_spectrum(f)) for f in files[:256]])
    single = features[:1]
    n_single = 200
    figures = {
        "read files/s": _rate(len(files), timed(read_only)),
        "read+preprocess files/s": _rate(len(files), timed(read_preprocess)),
        "read+preprocess files/s (batches of 128)": _rate(
            len(files), timed(read_preprocess_batched)
        ),
        "predictor batch 1 spectra/s": _rate(
            n_single, timed(lambda: [predictor.predict(single) for _ in range(n_single)])
        ),
        "predictor batch 256 spectra/s": _rate(
            256 * 8, timed(lambda: [predictor.predict(features) for _ in range(8)])
        ),
        "classify path files/s (1 process)": _rate(len(files), timed(lambda: classify(None))),
    }
    with preparation_pool(os.cpu_count() or 1) as pool:
        classify(pool)  # start the workers outside the timing
        figures[f"classify path files/s ({os.cpu_count()} reader processes)"] = _rate(
            len(files), timed(lambda: classify(pool))
        )
    context = {
        "device": str(jax.devices()[0].device_kind),
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "files": len(files),
        "bundle": predictor.bundle_id,
    }
    width = max(map(len, figures))
    print(f"stellar benchmark on {context['device']} ({context['cpus']} CPUs), {context}")
    for name, value in figures.items():
        print(f"{name:<{width}}  {value:10.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"figures": figures, "context": context}, indent=1))


if __name__ == "__main__":
    main()
