"""Figures of the spectral GAN: real vs generated spectra, and the quality report's plots.

Usage: ``plot_real_vs_generated(grid, real_features, generated_features, Path("s.png"))``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.plots import _pyplot

#: Lines marked on the plots (vacuum Angstrom): the O-star diagnostics and Balmer lines.
MARKED_LINES = {"He II 4686": 4687.0, "He I 4471": 4472.7, "Hβ": 4862.7, "Hγ": 4341.7}


def _masked_flux(features: np.ndarray) -> np.ndarray:
    """Continuum-normalised flux (1 = continuum), NaN where uncovered (gaps, not lines)."""
    flux = 1.0 + features[..., 0]
    return np.where(features[..., -1] > 0.5, flux, np.nan)


def plot_real_vs_generated(
    grid: np.ndarray,
    real: np.ndarray,
    generated: np.ndarray,
    path: Path,
    title: str = "",
    real_label: str = "real (augmented)",
) -> None:
    """Two panels of stacked spectra (offset by 0.5): real O stars left, generated right."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 6), sharey=True)
    for ax, group, name in ((axes[0], real, real_label), (axes[1], generated, "generated")):
        for i, flux in enumerate(_masked_flux(group)):
            ax.plot(grid, flux + 0.5 * i, lw=0.6)
        for label, wavelength in MARKED_LINES.items():
            ax.axvline(wavelength, color="grey", lw=0.4, ls=":")
            ax.text(wavelength, 0.4, label, rotation=90, fontsize=6, color="grey")
        ax.set_title(name)
        ax.set_xlabel("vacuum wavelength (Å)")
    axes[0].set_ylabel("continuum-normalised flux + offset")
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_distance_histograms(
    generated_to_real: np.ndarray, real_to_real: np.ndarray, path: Path
) -> None:
    """Memorisation: nearest-real distances of generated spectra vs real-to-real ones."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, max(generated_to_real.max(), real_to_real.max()) * 1.05, 40)
    ax.hist(generated_to_real, bins=bins, alpha=0.6, density=True, label="generated → nearest real")
    ax.hist(real_to_real, bins=bins, alpha=0.6, density=True, label="real → nearest other real")
    ax.axvline(real_to_real.min(), color="k", ls="--", lw=0.8, label="closest real pair")
    ax.set_xlabel("RMS distance of the flux channel")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_mean_spectra(
    grid: np.ndarray, real: np.ndarray, generated: np.ndarray, path: Path
) -> None:
    """Mean and ±1σ band of the flux channel, real vs generated (mode collapse shows here)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(11, 4))
    for group, name in ((real, "real"), (generated, "generated")):
        flux = _masked_flux(group)
        mean, std = np.nanmean(flux, axis=0), np.nanstd(flux, axis=0)
        ax.plot(grid, mean, lw=0.8, label=f"{name} mean")
        ax.fill_between(grid, mean - std, mean + std, alpha=0.25)
    for wavelength in MARKED_LINES.values():
        ax.axvline(wavelength, color="grey", lw=0.4, ls=":")
    ax.set_xlabel("vacuum wavelength (Å)")
    ax.set_ylabel("continuum-normalised flux")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
