"""LAMOST catalogue tools: split by MK class, stratified obsid samples, O-type extraction.

Usage::

    python scripts/lamost_catalogue.py split dr10_v2.0_LRS_catalogue.csv.gz --out by_class
    python scripts/lamost_catalogue.py sample my_data3.csv --out sample --per-class 500 --seed 1
    python scripts/lamost_catalogue.py o-type --fits-dir spectra/ --out o_type.npz

A thin wrapper over ``survey.cli catalogue`` (see docs/survey.md); ``--help`` on each action
lists its options.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from survey.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["catalogue", *sys.argv[1:]]))
