"""The active-learning database: schema, transactions, labels and candidates.

Usage::

    with connect(db) as conn, transaction(conn):   # one atomic step
        ...
    add_label(db, spectrum_id, "emission", "alice")  # committed at once
    candidate = next_candidate(db)                   # for the labelling page

Shared by :mod:`training.active` (which trains and selects candidates) and
:mod:`serving.labelling` (the web page), so that the page needs nothing from training/.
Tables: ``meta`` (the preprocessing spec), ``spectra`` (pool and seed spectra with their
140-point features as float32 blobs), ``labels`` (who/when; the newest label of a spectrum
counts; ``skip`` = undecidable), ``iterations``, ``predictions``, ``candidates``.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from models.halpha import HALPHA_LABELS, HalphaPreprocess

LABEL_CHOICES = (*HALPHA_LABELS, "skip")
EMISSION_LIKE = ("emission", "double-peak")
SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS spectra (
    id INTEGER PRIMARY KEY, ref TEXT UNIQUE NOT NULL, source TEXT, role TEXT NOT NULL
    CHECK (role IN ('pool', 'seed')), features BLOB NOT NULL, added_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY, spectrum_id INTEGER NOT NULL REFERENCES spectra(id),
    label TEXT NOT NULL CHECK (label IN ('absorption', 'emission', 'double-peak', 'noise',
    'skip')), labeller TEXT NOT NULL, labelled_at TEXT NOT NULL, iteration INTEGER);
CREATE TABLE IF NOT EXISTS iterations (
    number INTEGER PRIMARY KEY, started_at TEXT NOT NULL, trained_at TEXT, closed_at TEXT,
    model_dir TEXT, n_train INTEGER, counts TEXT, predict_seconds REAL,
    predictions_per_second REAL, n_reviewed INTEGER, n_positive INTEGER,
    precision REAL, precision_low REAL, precision_high REAL);
CREATE TABLE IF NOT EXISTS predictions (
    iteration INTEGER NOT NULL, spectrum_id INTEGER NOT NULL, predicted TEXT NOT NULL,
    probabilities TEXT NOT NULL, entropy REAL NOT NULL, PRIMARY KEY (iteration, spectrum_id));
CREATE TABLE IF NOT EXISTS candidates (
    iteration INTEGER NOT NULL, spectrum_id INTEGER NOT NULL, kind TEXT NOT NULL
    CHECK (kind IN ('review', 'uncertain')), rank INTEGER NOT NULL,
    PRIMARY KEY (iteration, spectrum_id));
CREATE INDEX IF NOT EXISTS labels_by_spectrum ON labels (spectrum_id, id);
"""


class ActiveStateError(RuntimeError):
    """The database is not in the state a command needs (the message says what to run)."""


def now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@contextlib.contextmanager
def connect(db: Path, create: bool = False) -> Iterator[sqlite3.Connection]:
    """A connection in autocommit mode; use ``with transaction(conn)`` for atomic steps.

    A missing file is an error (``sqlite3.OperationalError``) unless ``create`` is set, so
    that a mistyped path never leaves an empty database behind.
    """
    uri = f"{Path(db).absolute().as_uri()}?mode={'rwc' if create else 'rw'}"
    conn = sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA foreign_keys=ON")
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any exception (nothing half-written)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def require_db(db: Path) -> None:
    if not Path(db).is_file():
        raise ActiveStateError(f"{db}: no such database; run `skysort active init` first")


def current_iteration(conn: sqlite3.Connection) -> sqlite3.Row:
    row = conn.execute(
        "SELECT * FROM iterations WHERE closed_at IS NULL ORDER BY number DESC LIMIT 1"
    ).fetchone()
    if row is None:
        raise ActiveStateError("no open iteration; the database was not initialised")
    return row


def preprocess_of(conn: sqlite3.Connection) -> HalphaPreprocess:
    spec = json.loads(conn.execute("SELECT value FROM meta WHERE key='preprocess'").fetchone()[0])
    spec.pop("name")
    return HalphaPreprocess(**spec)


def create_database(db: Path) -> None:
    """Empty state: schema, the preprocessing spec and iteration 1 (open)."""
    with connect(db, create=True) as conn:
        conn.executescript(SCHEMA)
        with transaction(conn):
            spec = json.dumps(HalphaPreprocess().to_dict())
            conn.execute("INSERT INTO meta VALUES ('preprocess', ?)", (spec,))
            conn.execute("INSERT INTO iterations (number, started_at) VALUES (1, ?)", (now(),))


def add_label(db: Path, spectrum_id: int, label: str, labeller: str) -> dict:
    """Record one label (committed at once). ``skip`` marks it undecidable."""
    if label not in LABEL_CHOICES:
        raise ValueError(f"unknown label {label!r}; choose one of {', '.join(LABEL_CHOICES)}")
    with connect(db) as conn, transaction(conn):
        if conn.execute("SELECT 1 FROM spectra WHERE id=?", (spectrum_id,)).fetchone() is None:
            raise ActiveStateError(f"no spectrum with id {spectrum_id}")
        iteration = current_iteration(conn)["number"]
        conn.execute(
            "INSERT INTO labels (spectrum_id, label, labeller, labelled_at, iteration)"
            " VALUES (?, ?, ?, ?, ?)",
            (spectrum_id, label, labeller, now(), iteration),
        )
    return {"spectrum_id": spectrum_id, "label": label, "iteration": iteration}


def candidate_rows(db: Path, unlabelled_only: bool = True) -> list[dict]:
    """Candidates of the current iteration in rank order, with features and predictions."""
    require_db(db)
    with connect(db) as conn:
        number = current_iteration(conn)["number"]
        rows = conn.execute(
            "SELECT c.spectrum_id, c.kind, c.rank, s.ref, s.source, s.features, p.predicted,"
            " p.probabilities, (SELECT label FROM labels l WHERE l.spectrum_id = c.spectrum_id"
            " AND l.iteration = c.iteration ORDER BY l.id DESC LIMIT 1) AS label"
            " FROM candidates c JOIN spectra s ON s.id = c.spectrum_id"
            " JOIN predictions p ON p.iteration = c.iteration AND p.spectrum_id = c.spectrum_id"
            " WHERE c.iteration = ? ORDER BY c.rank",
            (number,),
        ).fetchall()
    out = []
    for r in rows:
        if unlabelled_only and r["label"] is not None:
            continue
        item = dict(r)
        item["iteration"] = number
        item["features"] = np.frombuffer(r["features"], np.float32)
        item["probabilities"] = dict(
            zip(HALPHA_LABELS, json.loads(r["probabilities"]), strict=True)
        )
        out.append(item)
    return out


def next_candidate(db: Path) -> dict | None:
    """The first unlabelled candidate of the current iteration (None when all are done)."""
    rows = candidate_rows(db)
    if not rows:
        return None
    return {**rows[0], "remaining": len(rows)}
