"""Preprocessing for the H-alpha profile classifier (absorption/emission/double-peak/noise).

Usage::

    from models.halpha import HalphaPreprocess
    features = HalphaPreprocess().apply(spectrum)   # (140, 1) float32 in [-1, 1]

The method of the Ondřejov/LAMOST emission-line star search: vacuum wavelengths (the
readers already convert Ondřejov air wavelengths with :func:`models.preprocess.air_to_vacuum`,
so a :class:`~models.io.base.Spectrum` arrives in vacuum), a Gaussian degradation of the
high-resolution CCD700 spectra to LAMOST-like resolution, linear interpolation onto 140
points over 6519–6732 Å and min-max scaling of each spectrum to [-1, 1].

When the degradation applies: only to spectra whose ``meta["source"]`` is in
``degrade_sources`` (default: ``("ondrejov",)``). A CCD700 pixel is ~0.26 Å (R ~ 13000 at
H-alpha); a Gaussian of sigma = 7 input pixels (~1.8 Å) brings it close to LAMOST's
R ~ 1800 (sigma ~ 1.55 Å), which needs no degradation. Other sources (LAMOST, SDSS,
text files) are used as they are.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from models.io.base import Spectrum, SpectrumReadError

HALPHA_LABELS = ("absorption", "emission", "double-peak", "noise")
HALPHA_VACUUM = 6564.61  # H-alpha rest wavelength in vacuum (Å)


@dataclass(frozen=True)
class HalphaPreprocess:
    """Spectrum -> (n_pix, 1) min-max scaled flux around H-alpha.

    Args:
        wave_min, wave_max: the window (vacuum Å); the spectrum's good pixels must cover it.
        n_pix: points of the linear output grid.
        degrade_sigma_pixels: sigma of the Gaussian degradation, in input pixels
            (0 switches it off).
        degrade_sources: ``meta["source"]`` values whose spectra are degraded.
        max_gap_fraction: the widest run without good pixels allowed inside the window,
            as a fraction of its width (wider gaps raise SpectrumReadError).
    """

    wave_min: float = 6519.0
    wave_max: float = 6732.0
    n_pix: int = 140
    degrade_sigma_pixels: float = 7.0
    degrade_sources: tuple[str, ...] = ("ondrejov",)
    max_gap_fraction: float = 0.1

    def __post_init__(self) -> None:
        # bundle.json stores tuples as lists; keep the dataclass hashable and comparable.
        object.__setattr__(self, "degrade_sources", tuple(self.degrade_sources))

    @property
    def grid(self) -> np.ndarray:
        """The output wavelengths (vacuum Å), linearly spaced."""
        return np.linspace(self.wave_min, self.wave_max, self.n_pix)

    @property
    def n_channels(self) -> int:
        return 1

    def to_dict(self) -> dict:
        params = asdict(self)
        params["degrade_sources"] = list(self.degrade_sources)
        return {"name": "halpha", **params}

    def degrades(self, spectrum: Spectrum) -> bool:
        """True when ``spectrum`` gets the Gaussian resolution degradation."""
        source = spectrum.meta.get("source")
        return self.degrade_sigma_pixels > 0 and source in self.degrade_sources

    def resampled_flux(self, spectrum: Spectrum) -> np.ndarray:
        """Flux on :attr:`grid` (degraded when it applies), before scaling; float64."""
        good = spectrum.good
        wavelength, flux = spectrum.wavelength[good], spectrum.flux[good]
        path = None  # the caller (models.prepare) re-raises with the file name
        if wavelength.size < 2:
            raise SpectrumReadError(path, "no good pixels; cannot preprocess for H-alpha")
        low, high = wavelength[0], wavelength[-1]
        if low > self.wave_min or high < self.wave_max:
            raise SpectrumReadError(
                path,
                f"the spectrum covers {low:.1f}-{high:.1f} Å (vacuum, good pixels) but the "
                f"H-alpha model needs {self.wave_min:.0f}-{self.wave_max:.0f} Å",
            )
        inside = wavelength[(wavelength >= self.wave_min) & (wavelength <= self.wave_max)]
        edges = np.concatenate([[self.wave_min], inside, [self.wave_max]])
        widest_gap = float(np.max(np.diff(edges)))
        if widest_gap > self.max_gap_fraction * (self.wave_max - self.wave_min):
            raise SpectrumReadError(
                path,
                f"{widest_gap:.0f} Å of the H-alpha window {self.wave_min:.0f}-"
                f"{self.wave_max:.0f} Å has no good pixel (masked or missing flux)",
            )
        if self.degrades(spectrum):
            flux = ndimage.gaussian_filter1d(flux, self.degrade_sigma_pixels, mode="nearest")
        return np.interp(self.grid, wavelength, flux)

    def apply(self, spectrum: Spectrum) -> np.ndarray:
        """Features of one spectrum: float32 of shape (n_pix, 1), min-max scaled to [-1, 1]."""
        return scale_to_unit(self.resampled_flux(spectrum))[:, None].astype(np.float32)


def scale_to_unit(flux: np.ndarray, path=None) -> np.ndarray:
    """Min-max scaling to [-1, 1]; a constant flux has no profile and raises."""
    low, high = float(np.min(flux)), float(np.max(flux))
    if not np.isfinite(low) or not np.isfinite(high) or high - low <= 0:
        raise SpectrumReadError(path, "the flux is constant or not finite around H-alpha")
    return 2.0 * (flux - low) / (high - low) - 1.0
