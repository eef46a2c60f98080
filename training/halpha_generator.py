"""Synthetic H-alpha profiles: absorption, emission, double-peak and noise-only spectra.

Usage::

    spectra, labels = generate_profiles(n_per_class=500, seed=0)          # CCD700-like
    spectra, labels = generate_profiles(100, seed=1, instrument="lamost")  # LAMOST-like
    python -m training.halpha_generator --out reports/halpha/generated_vs_real.png

Each draw is a physically motivated profile around H-alpha (vacuum 6564.61 Å) on a
continuum, returned as a :class:`~models.io.base.Spectrum` in vacuum wavelengths so that
it goes through the same :class:`~models.halpha.HalphaPreprocess` as real data:

* ``instrument="ccd700"``: Ondřejov CCD700 sampling (0.257 Å pixels, 6255-6790 Å, resolution
  R ~ 13000, Gaussian line-spread sigma 0.22 Å), ``meta["source"] = "ondrejov"`` so the
  preprocessing degrades it exactly as it degrades a real CCD700 spectrum;
* ``instrument="lamost"``: LAMOST LRS sampling (log-uniform, 1e-4 dex, 6300-6900 Å,
  R ~ 1800, sigma 1.55 Å), a flux-calibrated power-law continuum, ``meta["source"] =
  "simulated-lamost"`` (not degraded, like real LAMOST).

The drawn parameters are in :class:`ProfileParameters` (documented in docs/halpha.md).
Every spectrum's ``meta`` keeps its label, ``simulated: True`` and the drawn values.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from models.halpha import HALPHA_LABELS, HALPHA_VACUUM
from models.io.base import Spectrum

C_KMS = 299_792.458
HE_I_6678 = 6679.99  # He I 6678 Å (air 6678.15) in vacuum: hot-star absorption
FINE_STEP = 0.05  # Å, the grid on which profiles are built before the instrument


@dataclass(frozen=True)
class ProfileParameters:
    """Ranges the generator draws from (uniform unless "log" says log-uniform).

    Velocities in km/s, widths in Å (Gaussian sigma, Lorentzian half width), depths and
    heights relative to the continuum, S/N per output pixel.
    """

    radial_velocity: tuple[float, float] = (-120.0, 120.0)
    absorption_depth: tuple[float, float] = (0.15, 0.65)
    absorption_core_sigma: tuple[float, float] = (0.5, 2.5)
    absorption_wing_hwhm: tuple[float, float] = (0.5, 12.0)
    emission_height_log: tuple[float, float] = (0.3, 8.0)
    emission_sigma: tuple[float, float] = (0.8, 4.0)
    disc_half_separation_kms: tuple[float, float] = (100.0, 320.0)
    disc_vr_ratio_log: tuple[float, float] = (0.5, 2.0)
    disc_central_dip: tuple[float, float] = (0.0, 0.8)
    metal_lines: tuple[int, int] = (0, 25)
    snr_log: tuple[float, float] = (15.0, 400.0)
    noise_snr_log: tuple[float, float] = (0.7, 4.0)
    continuum_tilt: tuple[float, float] = (-0.15, 0.15)
    emission_min_peak: float = 0.2
    spike_rate: float = 0.0


@dataclass(frozen=True)
class Instrument:
    """Sampling and resolution of a spectrograph around H-alpha."""

    name: str
    wave_min: float
    wave_max: float
    sigma: float  # Gaussian line-spread sigma in Å
    log_step: float | None  # dex per pixel for log sampling, else linear
    linear_step: float | None
    source: str


INSTRUMENTS = {
    "ccd700": Instrument("ccd700", 6255.0, 6790.0, 0.22, None, 0.2567, "ondrejov"),
    "lamost": Instrument("lamost", 6300.0, 6900.0, 1.55, 1e-4, None, "simulated-lamost"),
}


def _gauss(x: np.ndarray, centre: float, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * ((x - centre) / sigma) ** 2)


def _lorentz(x: np.ndarray, centre: float, hwhm: float) -> np.ndarray:
    return 1.0 / (1.0 + ((x - centre) / hwhm) ** 2)


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(np.exp(rng.uniform(np.log(bounds[0]), np.log(bounds[1]))))


def photospheric_absorption(wave, centre, rng, p: ProfileParameters, scale=1.0) -> np.ndarray:
    """Negative profile: Gaussian core plus Lorentzian (pressure-broadened) wings."""
    depth = scale * _uniform(rng, p.absorption_depth)
    wing_weight = rng.uniform(0.2, 0.8)
    core = _gauss(wave, centre, _uniform(rng, p.absorption_core_sigma))
    wings = _lorentz(wave, centre, _uniform(rng, p.absorption_wing_hwhm))
    return -depth * ((1.0 - wing_weight) * core + wing_weight * wings)


def single_emission(wave, centre, rng, p: ProfileParameters) -> np.ndarray:
    """One emission peak (Gaussian with a Lorentzian share), optionally asymmetric."""
    height = _log_uniform(rng, p.emission_height_log)
    sigma = _uniform(rng, p.emission_sigma)
    lorentz_share = rng.uniform(0.0, 0.5)
    shape = (1 - lorentz_share) * _gauss(wave, centre, sigma) + lorentz_share * _lorentz(
        wave, centre, sigma * 1.18
    )
    return height * shape


def disc_emission(wave, centre, rng, p: ProfileParameters) -> np.ndarray:
    """Double-peaked disc emission: V and R peaks with a V/R ratio and a central dip."""
    separation = centre * _uniform(rng, p.disc_half_separation_kms) / C_KMS
    height = _log_uniform(rng, p.emission_height_log)
    vr = _log_uniform(rng, p.disc_vr_ratio_log)
    sigma = rng.uniform(0.25, 0.6) * separation
    violet = _gauss(wave, centre - separation, sigma)
    red = _gauss(wave, centre + separation, sigma)
    profile = (
        height * (np.sqrt(vr) * violet + red / np.sqrt(vr)) / max(np.sqrt(vr), 1 / np.sqrt(vr))
    )
    dip = _uniform(rng, p.disc_central_dip) * height
    return profile - dip * _gauss(wave, centre, 0.35 * separation)


def peak_count(wave: np.ndarray, flux: np.ndarray, centre: float, sigma: float = 1.8) -> int:
    """Emission peaks within 15 Å of ``centre`` once smoothed to ``sigma`` Å, each standing
    at least 5% of the line's height above the dip that separates it from the next one."""
    step = float(np.median(np.diff(wave)))
    smooth = ndimage.gaussian_filter1d(flux, sigma / step, mode="nearest")
    near = np.abs(wave - centre) < 15.0
    segment = smooth[near] - 1.0
    height = segment.max()
    if height <= 0:
        return 0
    inner = segment[1:-1]
    is_peak = (inner > segment[:-2]) & (inner >= segment[2:]) & (inner > 0.1 * height)
    peaks = np.flatnonzero(is_peak) + 1
    count = min(len(peaks), 1)
    for left, right in zip(peaks[:-1], peaks[1:], strict=True):
        dip = segment[left:right].min()
        count += min(segment[left], segment[right]) - dip > 0.05 * height
    return count


def _resolved_disc(wave, centre, rng, p: ProfileParameters, tries: int = 50) -> np.ndarray:
    """A disc profile whose two peaks stay apart at LAMOST-like resolution (sigma 1.8 Å).

    Unresolved discs look like single-peaked emission and would be mislabelled.
    """
    for _ in range(tries):
        profile = disc_emission(wave, centre, rng, p)
        if peak_count(wave, 1.0 + profile, centre) >= 2:
            return profile
    raise RuntimeError("no resolved double-peak profile in 50 draws; widen the parameters")


def _above_continuum(draw, underlying, minimum: float, tries: int = 50) -> np.ndarray:
    """An emission draw that rises >= ``minimum`` above the continuum once smoothed to
    the classifier's resolution (sigma 1.8 Å); otherwise an emission line inside an
    absorption trough, or a narrow weak one, would be labelled emission but not look it."""
    for _ in range(tries):
        emission = draw()
        smooth = ndimage.gaussian_filter1d(underlying + emission, 1.8 / FINE_STEP)
        if smooth.max() >= minimum:
            return emission
    raise RuntimeError("no emission profile above the continuum in 50 draws")


def metal_lines(wave, rng, p: ProfileParameters, avoid: float) -> np.ndarray:
    """Weak narrow photospheric lines (cool stars), none within 8 Å of H-alpha."""
    profile = np.zeros_like(wave)
    for _ in range(int(rng.integers(*p.metal_lines, endpoint=True))):
        centre = rng.uniform(wave[0], wave[-1])
        if abs(centre - avoid) > 8.0:
            sigma = rng.uniform(0.15, 0.5)
            profile -= rng.uniform(0.01, 0.15) * _gauss(wave, centre, sigma)
    return profile


def draw_profile(label: str, wave: np.ndarray, rng: np.random.Generator, p: ProfileParameters):
    """Continuum-normalised flux (1 + profile) of one class on ``wave``, and the RV drawn."""
    rv = _uniform(rng, p.radial_velocity)
    centre = HALPHA_VACUUM * (1 + rv / C_KMS)
    he_centre = HE_I_6678 * (1 + rv / C_KMS)
    profile = metal_lines(wave, rng, p, centre) if rng.uniform() < 0.5 else np.zeros_like(wave)
    if rng.uniform() < 0.4:  # hot stars: He I 6678
        profile -= rng.uniform(0.02, 0.25) * _gauss(wave, he_centre, rng.uniform(0.5, 1.5))
    if label == "absorption":
        profile += photospheric_absorption(wave, centre, rng, p)
    elif label == "emission":
        if rng.uniform() < 0.5:  # Be stars: emission filling a broad absorption
            profile += photospheric_absorption(wave, centre, rng, p, scale=0.6)
        profile += _above_continuum(
            lambda: single_emission(wave, centre, rng, p), profile, p.emission_min_peak
        )
    elif label == "double-peak":
        if rng.uniform() < 0.5:
            profile += photospheric_absorption(wave, centre, rng, p, scale=0.6)
        profile += _above_continuum(
            lambda: _resolved_disc(wave, centre, rng, p), profile, p.emission_min_peak
        )
    elif label == "noise":
        if rng.uniform() < 0.5:  # a line far below the noise
            profile += photospheric_absorption(wave, centre, rng, p, scale=0.1)
    else:
        raise ValueError(f"unknown H-alpha label {label!r}; known: {HALPHA_LABELS}")
    return 1.0 + profile, rv


def _output_grid(instrument: Instrument) -> np.ndarray:
    if instrument.log_step is not None:
        log_min, log_max = np.log10(instrument.wave_min), np.log10(instrument.wave_max)
        return 10 ** np.arange(log_min, log_max, instrument.log_step)
    return np.arange(instrument.wave_min, instrument.wave_max, instrument.linear_step)


def _observe(fine_wave, flux, instrument: Instrument, label, rng, p: ProfileParameters):
    """Line-spread function, sampling, continuum shape and noise of the instrument."""
    flux = ndimage.gaussian_filter1d(flux, instrument.sigma / FINE_STEP, mode="nearest")
    wave = _output_grid(instrument)
    flux = np.interp(wave, fine_wave, flux)
    x = (wave - HALPHA_VACUUM) / 250.0
    if instrument.name == "lamost":  # flux-calibrated: a power law times a level
        continuum = rng.uniform(50, 5000) * (wave / HALPHA_VACUUM) ** rng.uniform(-4.0, 1.5)
    else:  # normalised archive tables (level ~1) or raw ADU with a blaze tilt
        raw = rng.uniform() < 0.3
        continuum = (rng.uniform(3e3, 1e5) if raw else 1.0) * (
            1 + _uniform(rng, p.continuum_tilt) * x * raw
        )
    ripple = 1 + rng.uniform(0, 0.02) * np.sin(2 * np.pi * (x * rng.uniform(1, 4) + rng.uniform()))
    snr = _log_uniform(rng, p.noise_snr_log if label == "noise" else p.snr_log)
    signal = flux * continuum * ripple
    noisy = signal + rng.normal(size=wave.size) * np.median(continuum) / snr
    if (
        p.spike_rate and rng.uniform() < p.spike_rate
    ):  # cosmic rays / sky residuals: 1-2 pixels, anywhere
        for pixel in rng.integers(0, wave.size - 1, size=rng.integers(1, 4)):
            noisy[pixel : pixel + rng.integers(1, 3)] += rng.uniform(0.2, 2.0) * np.median(
                continuum
            )
    return wave, noisy, snr


def generate_profiles(
    n_per_class: int,
    seed: int,
    instrument: str = "ccd700",
    labels: tuple[str, ...] = HALPHA_LABELS,
    params: ProfileParameters | None = None,
) -> tuple[list[Spectrum], np.ndarray]:
    """``n_per_class`` spectra of each label, shuffled; returns (spectra, label indices).

    Label indices refer to :data:`models.halpha.HALPHA_LABELS`.
    """
    params = params or ProfileParameters()
    setup = INSTRUMENTS[instrument]
    rng = np.random.default_rng(seed)
    fine_wave = np.arange(setup.wave_min - 20, setup.wave_max + 20, FINE_STEP)
    spectra, indices = [], []
    for label in labels:
        for _ in range(n_per_class):
            flux, rv = draw_profile(label, fine_wave, rng, params)
            wave, observed, snr = _observe(fine_wave, flux, setup, label, rng, params)
            meta = {
                "source": setup.source,
                "simulated": True,
                "label": label,
                "radial_velocity": rv,
                "snr": snr,
            }
            spectra.append(Spectrum(wave, observed, np.ones_like(wave), meta))
            indices.append(HALPHA_LABELS.index(label))
    order = rng.permutation(len(spectra))
    return [spectra[i] for i in order], np.asarray(indices, np.int32)[order]


def plot_generated_vs_real(real: list[tuple[str, Spectrum]], out: Path, seed: int = 0) -> Path:
    """PNG: per class, preprocessed generated profiles (grey) over the real ones (colour)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from models.halpha import HalphaPreprocess

    preprocess = HalphaPreprocess()
    spectra, labels = generate_profiles(6, seed)
    fig, axes = plt.subplots(1, 4, figsize=(15, 3.6), sharey=True)
    for k, (ax, label) in enumerate(zip(axes, HALPHA_LABELS, strict=True)):
        for spectrum in (s for s, i in zip(spectra, labels, strict=True) if i == k):
            ax.plot(preprocess.grid, preprocess.apply(spectrum)[:, 0], color="0.6", lw=0.7)
        for spectrum in (s for n, s in real if n == label):
            ax.plot(preprocess.grid, preprocess.apply(spectrum)[:, 0], color="C3", lw=1.0)
        ax.set_title(f"{label}: generated (grey), real Ondřejov (red)", fontsize=9)
        ax.set_xlabel("vacuum wavelength (Å)")
    axes[0].set_ylabel("min-max scaled flux")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    """Write the generated-vs-real plot (real = the labelled spectra in data/ondrejov)."""
    from training.halpha import REPO_DATA, load_ondrejov_labelled

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(REPO_DATA / "ondrejov"))
    parser.add_argument("--out", default="reports/halpha/generated_vs_real.png")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    real = [(HALPHA_LABELS[i], s) for s, i, _ in load_ondrejov_labelled(Path(args.data))]
    print(plot_generated_vs_real(real, Path(args.out), args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
