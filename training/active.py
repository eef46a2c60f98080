"""Active learning of H-alpha profiles with its whole state in one SQLite file.

Usage::

    init_pool(db, [Path("lamost_dir")], Path("data/ondrejov/index.csv"))  # skysort active init
    train_iteration(db, ActiveConfig())    # skysort active train: balance, train, predict
    add_label(db, spectrum_id, "emission", "alice")   # the page or `skysort active label`
    close_iteration(db)                    # skysort active next: precision + Wilson interval
    export_candidates(db, Path("candidates.csv"))     # skysort active export

Tables: ``spectra`` (pool and seed spectra with their 140-point features), ``labels``
(who/when; the newest label of a spectrum counts, ``skip`` = undecidable, never trained on),
``iterations``, ``predictions`` (per iteration and spectrum) and ``candidates`` (``review``:
a random sample of the spectra predicted emission/double-peak, the paper's passive
sampling, which estimates precision; ``uncertain``: highest-entropy spectra for
relabelling). Every step is one transaction and every label is committed as it is given,
so interrupting any step loses no label; ``train`` resumes from its Orbax checkpoints.
The database layer is :mod:`models.active_store` (shared with the labelling page);
registering spectra is :mod:`training.active_pool`; reports are :mod:`training.active_report`.
"""

from __future__ import annotations

import json
import math
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.active_store import (
    EMISSION_LIKE,
    LABEL_CHOICES,
    ActiveStateError,
    add_label,
    candidate_rows,
    connect,
    current_iteration,
    next_candidate,
    now,
    require_db,
    transaction,
)
from models.halpha import HALPHA_LABELS
from training.active_pool import init_pool, register_files, register_spectra

__all__ = [  # the store's names are re-exported: callers need one import
    "EMISSION_LIKE",
    "LABEL_CHOICES",
    "ActiveConfig",
    "ActiveStateError",
    "add_label",
    "candidate_rows",
    "close_iteration",
    "connect",
    "init_pool",
    "next_candidate",
    "predict_pool",
    "register_files",
    "register_spectra",
    "train_iteration",
    "transaction",
]


@dataclass(frozen=True)
class ActiveConfig:
    """Settings of one ``active train`` round."""

    review_per_iteration: int = 50
    uncertain_per_iteration: int = 50
    synthetic_per_class: int = 0
    target_steps: int = 600
    seed: int = 0


def labelled_set(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray]:
    """Features (N, 140, 1) and label indices of every spectrum's newest non-skip label."""
    rows = conn.execute(
        "SELECT s.features, l.label FROM labels l JOIN spectra s ON s.id = l.spectrum_id"
        " WHERE l.id = (SELECT MAX(id) FROM labels WHERE spectrum_id = l.spectrum_id)"
        " AND l.label != 'skip'"
    ).fetchall()
    features = np.stack([np.frombuffer(r["features"], np.float32) for r in rows])[..., None]
    labels = np.asarray([HALPHA_LABELS.index(r["label"]) for r in rows], np.int32)
    return features, labels


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row."""
    p = np.clip(probabilities, 1e-12, 1.0)
    return -(p * np.log(p)).sum(axis=-1)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for z = 1.96)."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def _model_dir(db: Path, iteration: int) -> Path:
    return Path(db).with_name(f"{Path(db).stem}-models") / f"iteration-{iteration}"


def _train_model(db: Path, iteration: int, features, labels, config: ActiveConfig) -> Path:
    """Train through the shared loop (resumable) and write the iteration's bundle."""
    import dataclasses

    from models.bundle import save_bundle
    from training.halpha import HalphaTrainConfig, fit, network_kwargs, synthetic_set
    from training.loop import ArraySet

    halpha = HalphaTrainConfig(synthetic_per_class=config.synthetic_per_class, seed=config.seed)
    train = ArraySet(features, labels)
    if config.synthetic_per_class:
        synthetic = synthetic_set(halpha, config.seed)
        train = ArraySet(
            np.concatenate([synthetic.features, features]),
            np.concatenate([synthetic.labels, labels]).astype(np.int32),
        )
    balanced_size = len(HALPHA_LABELS) * np.bincount(train.labels).max()
    epochs = max(halpha.train.epochs, math.ceil(config.target_steps * 64 / balanced_size))
    # Small labelled sets make many short epochs: checkpoint about four times per run.
    train_config = dataclasses.replace(
        halpha.train, epochs=epochs, checkpoint_every=max(1, epochs // 4)
    )
    halpha = dataclasses.replace(halpha, train=train_config)
    workdir = _model_dir(db, iteration).with_name(f"iteration-{iteration}-work")
    # The same seed (and generated set) every round: rounds differ by their labels only.
    result = fit(train, halpha, workdir, seed=config.seed)
    out = _model_dir(db, iteration)
    if out.exists():  # a bundle left by a run interrupted before it was recorded
        shutil.rmtree(out)
    counts = np.bincount(labels, minlength=len(HALPHA_LABELS)).tolist()
    card = {
        "task": "halpha",
        "labels": list(HALPHA_LABELS),
        "network": {"name": "spectrum_cnn", "kwargs": network_kwargs(halpha)},
        "preprocess": halpha.preprocess.to_dict(),
        "feature_shape": [halpha.preprocess.n_pix, 1],
        "training": {
            "active_learning": {"database": Path(db).name, "iteration": iteration},
            "labelled_counts": dict(zip(HALPHA_LABELS, counts, strict=True)),
            "synthetic_per_class": config.synthetic_per_class,
            "balancing": "SMOTE (imbalanced-learn)",
            "history": result.history,
        },
        "metrics": {},
    }
    save_bundle(out, result.net, card)
    return out


def _pool(conn: sqlite3.Connection) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, features (N, 140, 1), already-labelled mask) of the pool spectra."""
    rows = conn.execute(
        "SELECT s.id, s.features, EXISTS (SELECT 1 FROM labels l WHERE l.spectrum_id = s.id)"
        " AS labelled FROM spectra s WHERE s.role = 'pool' ORDER BY s.id"
    ).fetchall()
    if not rows:
        raise ActiveStateError("the pool is empty; run `skysort active init --pool ...`")
    ids = np.asarray([r["id"] for r in rows])
    features = np.stack([np.frombuffer(r["features"], np.float32) for r in rows])[..., None]
    return ids, features, np.asarray([bool(r["labelled"]) for r in rows])


def select_candidates(
    predicted: np.ndarray, uncertainty: np.ndarray, labelled: np.ndarray, config: ActiveConfig
) -> list[tuple[int, str]]:
    """(pool index, kind): a random sample of unlabelled spectra predicted emission or
    double-peak (``review``), then the most uncertain others (``uncertain``)."""
    rng = np.random.default_rng(config.seed + int(labelled.sum()))
    emission_like = [HALPHA_LABELS.index(name) for name in EMISSION_LIKE]
    positive = np.flatnonzero(np.isin(predicted, emission_like) & ~labelled)
    n_review = min(config.review_per_iteration, len(positive))
    review = rng.choice(positive, n_review, replace=False) if n_review else np.array([], int)
    chosen = [(int(i), "review") for i in review]
    others = np.flatnonzero(~labelled & ~np.isin(np.arange(len(predicted)), review))
    ranked = others[np.argsort(-uncertainty[others], kind="stable")]
    chosen += [(int(i), "uncertain") for i in ranked[: config.uncertain_per_iteration]]
    return chosen


def _open_untrained(db: Path) -> int:
    require_db(db)
    with connect(db) as conn:
        iteration = current_iteration(conn)
    if iteration["trained_at"] is not None:
        raise ActiveStateError(
            f"iteration {iteration['number']} is already trained; label its candidates, "
            "then run `skysort active next`"
        )
    return iteration["number"]


def train_iteration(db: Path, config: ActiveConfig | None = None) -> dict:
    """Balance the labels, train, predict the whole pool, record counts and candidates."""
    config = config or ActiveConfig()
    number = _open_untrained(db)
    with connect(db) as conn:
        features, labels = labelled_set(conn)
    model_dir = _train_model(db, number, features, labels, config)
    return predict_pool(db, model_dir, config, n_train=len(labels))


def predict_pool(
    db: Path, model_dir: Path, config: ActiveConfig | None = None, n_train: int | None = None
) -> dict:
    """Predict the pool with an H-alpha bundle, record predictions, counts and candidates,
    and mark the open iteration trained (one transaction). ``train_iteration`` calls it
    with the model it trained; any bundle works (e.g. bundles/halpha to start a loop)."""
    from models.bundle import load_bundle

    config = config or ActiveConfig()
    number = _open_untrained(db)
    with connect(db) as conn:
        ids, pool_features, labelled = _pool(conn)
    predictor = load_bundle(model_dir)
    started = time.perf_counter()
    probabilities = predictor.predict(pool_features)
    seconds = time.perf_counter() - started
    predicted = probabilities.argmax(-1)
    uncertainty = entropy(probabilities)
    chosen = select_candidates(predicted, uncertainty, labelled, config)
    counts = dict(zip(HALPHA_LABELS, np.bincount(predicted, minlength=4).tolist(), strict=True))
    with connect(db) as conn, transaction(conn):
        conn.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?)",
            [
                (number, int(i), HALPHA_LABELS[p], json.dumps(np.round(row, 5).tolist()), float(h))
                for i, p, row, h in zip(ids, predicted, probabilities, uncertainty, strict=True)
            ],
        )
        conn.executemany(
            "INSERT OR REPLACE INTO candidates VALUES (?, ?, ?, ?)",
            [(number, int(ids[i]), kind, rank) for rank, (i, kind) in enumerate(chosen)],
        )
        conn.execute(
            "UPDATE iterations SET trained_at=?, model_dir=?, n_train=?, counts=?,"
            " predict_seconds=?, predictions_per_second=? WHERE number=?",
            (
                now(),
                str(model_dir),
                n_train,
                json.dumps(counts),
                seconds,
                len(ids) / seconds,
                number,
            ),
        )
    return {
        "iteration": number,
        "trained_on": n_train,
        "pool": len(ids),
        "predicted_counts": counts,
        "candidates": {k: sum(c == k for _, c in chosen) for k in ("review", "uncertain")},
        "pool_predictions_per_second": round(len(ids) / seconds, 1),
        "model": str(model_dir),
    }


def _newest_labels(conn: sqlite3.Connection, iteration: int) -> list[sqlite3.Row]:
    """Review candidates of ``iteration`` with their newest label (None if unlabelled)."""
    return conn.execute(
        "SELECT c.spectrum_id, (SELECT label FROM labels WHERE spectrum_id = c.spectrum_id"
        " ORDER BY id DESC LIMIT 1) AS label FROM candidates c"
        " WHERE c.iteration = ? AND c.kind = 'review'",
        (iteration,),
    ).fetchall()


def close_iteration(db: Path) -> dict:
    """Estimate precision from the labelled review sample, close, open the next iteration.

    Precision = share of reviewed spectra predicted emission/double-peak whose label is
    emission or double-peak (``skip`` and unlabelled ones are left out), with a 95% Wilson
    interval.
    """
    require_db(db)
    with connect(db) as conn, transaction(conn):
        iteration = current_iteration(conn)
        number = iteration["number"]
        if iteration["trained_at"] is None:
            raise ActiveStateError(f"iteration {number} is not trained; run `skysort active train`")
        labels = [
            r["label"] for r in _newest_labels(conn, number) if r["label"] not in (None, "skip")
        ]
        positive = sum(label in EMISSION_LIKE for label in labels)
        precision = positive / len(labels) if labels else None
        low, high = wilson_interval(positive, len(labels))
        conn.execute(
            "UPDATE iterations SET closed_at=?, n_reviewed=?, n_positive=?, precision=?,"
            " precision_low=?, precision_high=? WHERE number=?",
            (now(), len(labels), positive, precision, low, high, number),
        )
        conn.execute(
            "INSERT INTO iterations (number, started_at) VALUES (?, ?)", (number + 1, now())
        )
    return {
        "closed": number,
        "reviewed": len(labels),
        "emission_like": positive,
        "precision": precision,
        "wilson_95": [round(low, 4), round(high, 4)],
        "next": number + 1,
    }
