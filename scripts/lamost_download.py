"""Download LAMOST spectra by obsid: concurrent, resumable, verified, never partial.

Usage::

    python scripts/lamost_download.py --obsids sample/obsids.txt --out spectra/ \\
        --release dr10/v2.0 --workers 4

A thin wrapper over ``survey.cli download`` (see docs/survey.md and ``--help``). Exits 1 when
some obsid failed; the failures are printed on stderr as JSON lines.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from survey.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["download", *sys.argv[1:]]))
