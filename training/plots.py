"""Plots for evaluation reports.

Usage: ``plot_misclassified_spectra(grid, features, files, true, predicted, path)``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_misclassified_spectra(
    grid: np.ndarray,
    features: np.ndarray,
    files: list[str],
    true: list[str],
    predicted: list[str],
    path: Path,
    limit: int = 6,
) -> None:
    """Up to ``limit`` misclassified spectra (first feature channel) stacked in one PNG."""
    plt = _pyplot()
    n = min(limit, len(files))
    fig, axes = plt.subplots(max(n, 1), 1, figsize=(9, 1.8 * max(n, 1) + 0.6), squeeze=False)
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified spectra", ha="center", va="center")
        axes[0, 0].set_axis_off()
    for ax, i in zip(axes[:, 0], range(n), strict=False):
        covered = features[i, :, -1] > 0.5
        flux = np.where(covered, features[i, :, 0], np.nan)
        ax.plot(grid, flux, lw=0.7, color="k")
        ax.set_title(f"{Path(files[i]).name}: true {true[i]}, predicted {predicted[i]}", fontsize=9)
        ax.set_ylabel("norm. flux")
    axes[-1, 0].set_xlabel("vacuum wavelength (Å)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
