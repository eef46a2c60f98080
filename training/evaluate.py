"""Classification metrics and evaluation reports (JSON + PNG).

Usage: ``metrics = classification_metrics(true, predicted, labels)``;
``write_report(report_dir, metrics, ...)``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def confusion_matrix(true: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts with rows = true class, columns = predicted class."""
    matrix = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(matrix, (np.asarray(true), np.asarray(predicted)), 1)
    return matrix


def classification_metrics(true: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    """Accuracy, per-class precision/recall/F1/support, macro F1 and the confusion matrix.

    Classes absent from both ``true`` and ``predicted`` get ``None`` figures, not zeros.
    """
    matrix = confusion_matrix(true, predicted, len(labels))
    per_class = {}
    f1_values = []
    for i, label in enumerate(labels):
        tp = matrix[i, i]
        support, predicted_n = matrix[i].sum(), matrix[:, i].sum()
        precision = tp / predicted_n if predicted_n else None
        recall = tp / support if support else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
        if support:
            f1_values.append(f1 or 0.0)
        per_class[label] = {
            "precision": _round(precision),
            "recall": _round(recall),
            "f1": _round(f1),
            "support": int(support),
        }
    total = matrix.sum()
    return {
        "n": int(total),
        "accuracy": _round(np.trace(matrix) / total if total else None),
        "macro_f1": _round(float(np.mean(f1_values)) if f1_values else None),
        "one_class_off_or_better": _round(_within_one(true, predicted) if total else None),
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }


def _within_one(true: np.ndarray, predicted: np.ndarray) -> float:
    return float(np.mean(np.abs(np.asarray(true) - np.asarray(predicted)) <= 1))


def _round(value) -> float | None:
    return None if value is None else round(float(value), 4)


def plot_confusion(metrics: dict, path: Path, title: str) -> None:
    """Confusion matrix as a PNG with counts in each cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.asarray(metrics["confusion_matrix"])
    labels = metrics["labels"]
    fig, ax = plt.subplots(figsize=(1.0 + 0.7 * len(labels), 0.8 + 0.7 * len(labels)))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}\naccuracy {metrics['accuracy']:.3f} (n={metrics['n']})")
    threshold = matrix.max() / 2 if matrix.size else 0
    for (i, j), count in np.ndenumerate(matrix):
        colour = "white" if count > threshold else "black"
        ax.text(j, i, str(count), ha="center", va="center", color=colour)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_metrics(metrics: dict, report_dir: Path, title: str) -> None:
    """metrics.json and confusion_matrix.png in ``report_dir``."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    plot_confusion(metrics, report_dir / "confusion_matrix.png", title)
