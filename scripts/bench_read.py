"""Time reading + stellar preprocessing of spectrum files; optionally dump/compare features.

Usage::

    .venv/bin/python scripts/bench_read.py --repeat 5                  # timings (LAMOST LRS)
    .venv/bin/python scripts/bench_read.py --dump /tmp/ref.npz         # save all features
    .venv/bin/python scripts/bench_read.py --compare /tmp/ref.npz      # check against a dump

The dump/compare covers every spectrum file under data/ (readable or not: errors are
compared as text) so that a change of the readers or the preprocessing can be checked for
identical output.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.io import read_spectrum  # noqa: E402
from models.io.base import ReadError  # noqa: E402
from models.preprocess import StellarPreprocess  # noqa: E402


def _all_files() -> list[Path]:
    skip = {".jpeg", ".jpg", ".png", ".md", ".csv", ".list"}
    files = [
        path
        for path in sorted((ROOT / "data").rglob("*"))
        if path.is_file() and path.suffix.lower() not in skip and "galaxy" not in path.parts
    ]
    return files


def _record(path: Path, preprocess: StellarPreprocess) -> dict[str, object]:
    try:
        spectrum = read_spectrum(path)
    except ReadError as error:
        return {"error": str(error)}
    out: dict[str, object] = {
        "wavelength": spectrum.wavelength,
        "flux": spectrum.flux,
        "ivar": spectrum.ivar,
        "meta": repr(sorted(spectrum.meta.items())),
    }
    try:
        out["features"] = preprocess.apply(spectrum)
    except (ReadError, ValueError) as error:
        out["features_error"] = str(error)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dump", type=Path)
    parser.add_argument("--compare", type=Path)
    args = parser.parse_args()
    preprocess = StellarPreprocess()
    if args.dump or args.compare:
        records = {str(p.relative_to(ROOT)): _record(p, preprocess) for p in _all_files()}
        if args.dump:
            np.save(args.dump, records, allow_pickle=True)
            print(f"dumped {len(records)} files to {args.dump}")
            return
        reference = np.load(args.compare, allow_pickle=True).item()
        bad = inexact = 0
        for name in sorted(set(reference) | set(records)):
            old, new = reference.get(name), records.get(name)
            if old is None or new is None or set(old) != set(new):
                print("DIFF keys", name, old and sorted(old), new and sorted(new))
                bad += 1
                continue
            for key, value in old.items():
                if isinstance(value, np.ndarray):
                    inexact += not np.array_equal(value, new[key], equal_nan=True)
                    same = value.shape == new[key].shape and np.allclose(
                        value, new[key], rtol=0, atol=1e-6, equal_nan=True
                    )
                else:
                    same = value == new[key]
                if not same:
                    print("DIFF", name, key)
                    bad += 1
        print(
            f"compared {len(records)} files: {bad} differences > 1e-6, "
            f"{inexact} arrays not bit-identical"
        )
        sys.exit(1 if bad else 0)
    files = sorted((ROOT / "data/lamost/dr1_learninglamost").glob("*.fits"))
    for path in files[:5]:  # warm-up
        preprocess.apply(read_spectrum(path))
    best_read = best_all = float("inf")
    for _ in range(args.repeat):
        start = time.perf_counter()
        spectra = [read_spectrum(path) for path in files]
        read_s = time.perf_counter() - start
        start = time.perf_counter()
        for spectrum in spectra:
            preprocess.apply(spectrum)
        pre_s = time.perf_counter() - start
        best_read = min(best_read, read_s)
        best_all = min(best_all, read_s + pre_s)
    n = len(files)
    print(
        f"{n} files, best of {args.repeat}: read {1e3 * best_read / n:.3f} ms/file, "
        f"read+preprocess {1e3 * best_all / n:.3f} ms/file"
    )


if __name__ == "__main__":
    main()
