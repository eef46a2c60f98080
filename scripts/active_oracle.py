"""Active learning end to end with a scripted oracle; prints precision per iteration and
pool predictions per second.

Usage: ``python scripts/active_oracle.py [--workdir runs/active-oracle] [--simulated 4900]
[--review 100] [--uncertain 50] [--synthetic-per-class 400]``

The pool is the real LAMOST FITS files under data/lamost plus SIMULATED LAMOST-like
spectra from :mod:`training.halpha_generator` (``instrument="lamost"``: R ~ 1800, 1e-4 dex
pixels, power-law continuum, noise-only spectra at S/N 0.7-4), drawn with a
survey-like class mix (55% absorption, 12% emission, 8% double-peak, 25% noise) and
harder parameters than the training defaults (POOL_PARAMETERS: S/N 4-150, emission peaks
down to 0.1 of the continuum, spikes in 30% of the spectra).
The seed labelled set is the labelled Ondřejov spectra (data/ondrejov/index.csv).
The oracle answers from a CSV file of true labels (``oracle_labels.csv``, written here for
the simulated spectra); the real LAMOST files have no label there, so it answers ``skip``
for them, as a person would for an undecidable spectrum.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.halpha import HALPHA_LABELS  # noqa: E402
from training.active import (  # noqa: E402
    EMISSION_LIKE,
    ActiveConfig,
    add_label,
    candidate_rows,
    close_iteration,
    connect,
    init_pool,
    register_spectra,
    train_iteration,
)
from training.active_report import export_candidates  # noqa: E402
from training.halpha_generator import ProfileParameters, generate_profiles  # noqa: E402

MIX = {"absorption": 0.55, "emission": 0.12, "double-peak": 0.08, "noise": 0.25}
#: Harder than the training defaults, like a survey: lower S/N, weaker emission, and
#: cosmic-ray / sky-residual spikes in 30% of the spectra.
POOL_PARAMETERS = ProfileParameters(
    snr_log=(4.0, 150.0), emission_height_log=(0.12, 4.0), emission_min_peak=0.1, spike_rate=0.3
)


def simulated_pool(n: int, seed: int) -> list[tuple[str, object, str]]:
    """(ref, spectrum, true label) of ``n`` LAMOST-like simulated spectra in the MIX."""
    items = []
    for k, (label, share) in enumerate(MIX.items()):
        spectra, _ = generate_profiles(
            round(n * share), seed * 10 + k, "lamost", (label,), POOL_PARAMETERS
        )
        items += [(s, label) for s in spectra]
    order = np.random.default_rng(seed).permutation(len(items))
    return [(f"simulated-lamost/s{seed}/{j:05d}", *items[i]) for j, i in enumerate(order)]


def oracle_answers(db: Path, oracle: dict[str, str], labeller: str) -> dict:
    """Label every open candidate from the oracle file (``skip`` when it has no label)."""
    given = dict.fromkeys((*HALPHA_LABELS, "skip"), 0)
    for row in candidate_rows(db):
        label = oracle.get(row["ref"], "skip")
        add_label(db, row["spectrum_id"], label, labeller)
        given[label] += 1
    return given


def true_precision(db: Path, iteration: int, oracle: dict[str, str]) -> float | None:
    """Precision of the emission/double-peak predictions over ALL simulated pool spectra."""
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT s.ref, p.predicted FROM predictions p JOIN spectra s ON s.id = p.spectrum_id"
            " WHERE p.iteration = ? AND p.predicted IN ('emission', 'double-peak')",
            (iteration,),
        ).fetchall()
    known = [oracle[r["ref"]] for r in rows if r["ref"] in oracle]
    return round(float(np.mean([k in EMISSION_LIKE for k in known])), 4) if known else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=str(REPO / "runs" / "active-oracle"))
    parser.add_argument("--simulated", type=int, default=4900)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--review", type=int, default=100)
    parser.add_argument("--uncertain", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--synthetic-per-class",
        type=int,
        default=400,
        help="generator profiles (training defaults) added to every round's training set",
    )
    parser.add_argument("--lamost", default=str(REPO / "data" / "lamost"))
    args = parser.parse_args(argv)

    workdir = Path(args.workdir)
    if workdir.exists():
        shutil.rmtree(workdir)
    workdir.mkdir(parents=True)
    db = workdir / "active.sqlite"
    started = time.perf_counter()
    summary = init_pool(db, [Path(args.lamost)], REPO / "data" / "ondrejov" / "index.csv")
    init_seconds = time.perf_counter() - started
    simulated = simulated_pool(args.simulated, args.seed)
    added, errors = register_spectra(db, ((ref, s) for ref, s, _ in simulated))
    oracle_file = workdir / "oracle_labels.csv"
    with open(oracle_file, "w", newline="") as handle:
        csv.writer(handle).writerows([("ref", "label"), *((r, label) for r, _, label in simulated)])
    with open(oracle_file, newline="") as handle:
        oracle = {row["ref"]: row["label"] for row in csv.DictReader(handle)}
    print(
        f"pool: {summary['pool']} real LAMOST files ({len(summary['errors'])} rejected) "
        f"+ {added} simulated = {summary['pool'] + added}; seed labelled: "
        f"{summary['seed_labelled']}; real files read+preprocessed in {init_seconds:.1f} s"
    )
    config = ActiveConfig(
        args.review, args.uncertain, synthetic_per_class=args.synthetic_per_class, seed=args.seed
    )
    report = []
    for _ in range(args.iterations):
        t0 = time.perf_counter()
        trained = train_iteration(db, config)
        given = oracle_answers(db, oracle, f"oracle:{oracle_file.name}")
        closed = close_iteration(db)
        row = {
            "iteration": trained["iteration"],
            "trained_on": trained["trained_on"],
            "predicted_counts": trained["predicted_counts"],
            "oracle_labels": given,
            "estimated_precision": closed["precision"],
            "wilson_95": closed["wilson_95"],
            "true_precision_simulated": true_precision(db, trained["iteration"], oracle),
            "pool_predictions_per_second": trained["pool_predictions_per_second"],
            "seconds": round(time.perf_counter() - t0, 1),
        }
        report.append(row)
        print(json.dumps(row))
    exported = export_candidates(db, workdir / "candidates.csv")
    print(f"candidates: {exported['csv']}; precision plot: {exported['precision_plot']}")
    precisions = [r["estimated_precision"] for r in report]
    every_step = all(b > a for a, b in zip(precisions, precisions[1:], strict=False))
    print(
        f"estimated precision per iteration: {[round(p, 4) for p in precisions]} "
        f"(last > first: {precisions[-1] > precisions[0]}; rises at every step: {every_step})"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
