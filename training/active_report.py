"""Reports of an active-learning database: candidates CSV and precision per iteration.

Usage: ``export_candidates(db, Path("candidates.csv"))`` (``skysort active export``) writes
the CSV and ``candidates_precision.png`` beside it.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from models.active_store import connect, require_db
from models.halpha import HALPHA_LABELS

EXPORT_COLUMNS = (
    "iteration",
    "kind",
    "rank",
    "spectrum_id",
    "ref",
    "source",
    "predicted",
    *(f"p_{name}" for name in HALPHA_LABELS),
    "entropy",
    "label",
    "labeller",
    "labelled_at",
)


def export_candidates(db: Path, out: Path) -> dict:
    """Write every iteration's candidates with probabilities and labels to CSV, and the
    estimated precision per iteration to ``<out stem>_precision.png``."""
    require_db(db)
    with connect(db) as conn:
        rows = conn.execute(
            "SELECT c.iteration, c.kind, c.rank, c.spectrum_id, s.ref, s.source, p.predicted,"
            " p.probabilities, p.entropy, l.label, l.labeller, l.labelled_at"
            " FROM candidates c JOIN spectra s ON s.id = c.spectrum_id"
            " JOIN predictions p ON p.iteration = c.iteration AND p.spectrum_id = c.spectrum_id"
            " LEFT JOIN labels l ON l.id = (SELECT MAX(id) FROM labels"
            "   WHERE spectrum_id = c.spectrum_id)"
            " ORDER BY c.iteration, c.rank"
        ).fetchall()
        iterations = [dict(r) for r in conn.execute("SELECT * FROM iterations ORDER BY number")]
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(EXPORT_COLUMNS)
        for r in rows:
            probabilities = json.loads(r["probabilities"])
            writer.writerow(
                [
                    r["iteration"],
                    r["kind"],
                    r["rank"],
                    r["spectrum_id"],
                    r["ref"],
                    r["source"],
                    r["predicted"],
                    *probabilities,
                    round(r["entropy"], 5),
                    r["label"] or "",
                    r["labeller"] or "",
                    r["labelled_at"] or "",
                ]
            )
    plot = out.with_name(f"{out.stem}_precision.png")
    plot_precision(iterations, plot)
    return {
        "csv": str(out),
        "rows": len(rows),
        "precision_plot": str(plot),
        "iterations": [_iteration_summary(i) for i in iterations],
    }


def _iteration_summary(row: dict) -> dict:
    keys = (
        "number",
        "n_train",
        "n_reviewed",
        "precision",
        "precision_low",
        "precision_high",
        "predictions_per_second",
        "closed_at",
    )
    summary = {k: row[k] for k in keys}
    summary["counts"] = json.loads(row["counts"]) if row["counts"] else None
    return summary


def plot_precision(iterations: list[dict], path: Path) -> None:
    """Estimated precision with its Wilson interval for each closed iteration."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    closed = [i for i in iterations if i["precision"] is not None]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    if closed:
        x = [i["number"] for i in closed]
        y = np.asarray([i["precision"] for i in closed])
        low = np.clip(y - np.asarray([i["precision_low"] for i in closed]), 0, None)
        high = np.clip(np.asarray([i["precision_high"] for i in closed]) - y, 0, None)
        ax.errorbar(x, y, yerr=[low, high], marker="o", capsize=4)
        ax.set_xticks(x)
    else:
        ax.text(0.5, 0.5, "no closed iteration yet", ha="center", transform=ax.transAxes)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("iteration")
    ax.set_ylabel("estimated precision (95% Wilson)")
    ax.set_title("emission / double-peak candidates", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
