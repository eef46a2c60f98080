"""Registering spectra in an active-learning database: the pool and the seed labels.

Usage::

    init_pool(db, [Path("lamost_dir")], Path("data/ondrejov/index.csv"))  # skysort active init
    register_spectra(db, [("simulated/0", spectrum), ...])              # in-memory spectra

Files are read and preprocessed with :func:`models.prepare.prepare` (the serving path), so
the stored 140-point features are exactly what the classifier sees.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from models.active_store import (
    ActiveStateError,
    connect,
    create_database,
    now,
    preprocess_of,
    transaction,
)
from models.halpha import HALPHA_LABELS
from models.io.base import ReadError, Spectrum


def pool_files(sources: Iterable[Path]) -> list[Path]:
    """FITS files under folders (recursively) and paths listed in text files, in order."""
    files = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            files += sorted(p for p in source.rglob("*") if ".fit" in p.name.lower())
        elif source.is_file() and ".fit" in source.name.lower():
            files.append(source)
        elif source.is_file():  # one path per line, relative to the list's folder
            lines = [line.strip() for line in source.read_text().splitlines()]
            files += [source.parent / line for line in lines if line]
        else:
            raise FileNotFoundError(f"{source}: no such folder or list of files")
    return files


def register_spectra(
    db: Path, items: Iterable[tuple[str, Spectrum]], role: str = "pool"
) -> tuple[int, list[str]]:
    """Preprocess and store in-memory spectra (e.g. simulated ones); returns (added, errors).

    A spectrum that cannot be preprocessed (e.g. it does not cover the H-alpha window) is
    not added; its reason is returned.
    """
    with connect(db) as conn:
        preprocess = preprocess_of(conn)
    rows, errors = [], []
    for ref, spectrum in items:
        try:
            rows.append((ref, spectrum.meta.get("source"), preprocess.apply(spectrum)[:, 0]))
        except ReadError as error:
            errors.append(f"{ref}: {error.reason}")
    return _store(db, rows, role), errors


def register_files(
    db: Path, files: list[Path], role: str = "pool", workers: int = 1
) -> tuple[int, list[str]]:
    """Read, preprocess and store spectrum files; returns (added, errors naming each file).

    Uses :func:`models.prepare.prepare` (the serving path), in ``workers`` processes when
    there are many files.
    """
    from functools import partial

    from models.inference import preparation_pool
    from models.prepare import prepare

    with connect(db) as conn:
        preprocessors = {"halpha": preprocess_of(conn)}
    job = partial(prepare, preprocessors=preprocessors, task="halpha")
    if workers > 1:
        with preparation_pool(workers) as pool:
            prepared = list(pool.map(job, files, chunksize=max(1, len(files) // (4 * workers))))
    else:
        prepared = [job(path) for path in files]
    rows = [(p.file, "file", p.features[:, 0]) for p in prepared if p.error is None]
    return _store(db, rows, role), [p.error for p in prepared if p.error is not None]


def _store(db: Path, rows: list[tuple[str, str | None, np.ndarray]], role: str) -> int:
    """Insert (ref, source, features) rows in one transaction; a known ref is skipped."""
    with connect(db) as conn, transaction(conn):
        before = conn.total_changes
        conn.executemany(
            "INSERT OR IGNORE INTO spectra (ref, source, role, features, added_at)"
            " VALUES (?, ?, ?, ?, ?)",
            [(r, src, role, f.astype(np.float32).tobytes(), now()) for r, src, f in rows],
        )
        return conn.total_changes - before


def init_pool(
    db: Path, pool: list[Path], labelled_index: Path | None = None, workers: int = 1
) -> dict:
    """Create the database: pool spectra, the initial labelled set, iteration 1 (open).

    Args:
        db: the SQLite file to create (its folder is created; an existing one is refused).
        pool: folders of FITS files or text files listing spectra.
        labelled_index: an index.csv with ``file`` and ``label`` columns (file paths
            relative to it), e.g. data/ondrejov/index.csv; rows without a known label are
            ignored.
        workers: processes that read and preprocess the pool files.
    """
    db = Path(db)
    if db.exists():
        raise ActiveStateError(f"{db} exists; choose a new --db or remove it")
    db.parent.mkdir(parents=True, exist_ok=True)
    # Built under a temporary name and renamed when complete: an interrupted init leaves
    # no half-filled database behind.
    partial = db.with_name(db.name + ".partial")
    partial.unlink(missing_ok=True)
    create_database(partial)
    added, errors = register_files(partial, pool_files(pool), workers=workers)
    seeds = 0
    if labelled_index is not None:
        seeds, seed_errors = register_seed_labels(partial, labelled_index)
        errors += seed_errors
    partial.rename(db)
    return {"db": str(db), "pool": added, "seed_labelled": seeds, "errors": errors}


def register_seed_labels(db: Path, index_csv: Path) -> tuple[int, list[str]]:
    """Add the labelled spectra of an index.csv as seeds, labelled by that file."""
    from training.halpha import label_of

    index_csv = Path(index_csv)
    with open(index_csv, newline="") as handle:
        rows = [r for r in csv.DictReader(handle) if label_of(r.get("label", "")) is not None]
    files = [index_csv.parent / r["file"] for r in rows]
    added, errors = register_files(db, files, role="seed")
    with connect(db) as conn, transaction(conn):
        for row, path in zip(rows, files, strict=True):
            found = conn.execute("SELECT id FROM spectra WHERE ref=?", (str(path),)).fetchone()
            if found is not None:
                label = HALPHA_LABELS[label_of(row["label"])]
                conn.execute(
                    "INSERT INTO labels (spectrum_id, label, labeller, labelled_at, iteration)"
                    " VALUES (?, ?, ?, ?, 0)",
                    (found["id"], label, index_csv.name, now()),
                )
    return added, errors
