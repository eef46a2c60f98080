"""Preprocessing shared by training and serving: air->vacuum, grids, resampling, normalisation.

Usage::

    from models.preprocess import StellarPreprocess
    spec = StellarPreprocess()              # parameters come from the bundle in practice
    features = spec.apply(spectrum)         # (n_pix, 2): normalised flux, coverage mask
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from models.halpha import HalphaPreprocess  # H-alpha window: its own module
from models.image_preprocess import GalaxyPreprocess  # image crops: their own module
from models.io.base import Spectrum


def air_to_vacuum(wavelength_air: np.ndarray) -> np.ndarray:
    """Convert air wavelengths (Angstrom) to vacuum: Ciddor (1996), for any wavelength.

    PyAstronomy's ``airtovac2(mode="ciddor")`` converts air wavelengths of 3000-16895 A
    (its formula covers vacuum wavelengths of 3000-16900 A), asked for a precision of
    1e-9 A: with the default 1e-12 A, below float64 resolution in the near-IR, its
    iterative inversion fails to converge at some wavelengths (e.g. 16380 A). Outside that
    range the wavelength is multiplied by the refractive index at the nearest edge. Red of
    the edge n - 1 changes by < 0.2% out to 5 um (< 0.03 A); blue of 3000 A, where the
    formula is not valid, the edge index gives n - 1 up to 11% low at 2000 A (0.06 A).
    NaN stays NaN; the result is float64 with the input's shape.

    PyAstronomy is imported here, not at module import, because it takes seconds to load
    and only air-wavelength sources (Ondřejov, JHC, Pickles, text marked 'air') need it.
    """
    from PyAstronomy.pyasl.asl.airtovac import airtovac2

    low, high, precision = 3000.0, 16895.0, 1e-9
    air = np.asarray(wavelength_air, dtype=np.float64)
    vacuum = air.copy()
    inside = (air >= low) & (air <= high)
    if inside.any():
        vacuum[inside] = airtovac2(air[inside], mode="ciddor", precision=precision)
    edges = np.array([low, high])
    index_low, index_high = airtovac2(edges, mode="ciddor", precision=precision) / edges
    vacuum[air < low] = air[air < low] * index_low
    vacuum[air > high] = air[air > high] * index_high
    return vacuum


def log_grid(wave_min: float, wave_max: float, n_pix: int) -> np.ndarray:
    """Wavelengths (Angstrom) evenly spaced in log10, from wave_min to wave_max inclusive."""
    return np.logspace(np.log10(wave_min), np.log10(wave_max), n_pix)


@functools.lru_cache(maxsize=32)
def _grid_and_edges(wave_min: float, wave_max: float, n_pix: int) -> tuple[np.ndarray, np.ndarray]:
    """log_grid() and its bin edges, computed once per grid (read-only arrays)."""
    grid = log_grid(wave_min, wave_max, n_pix)
    edges = _edges(grid)
    grid.setflags(write=False)
    edges.setflags(write=False)
    return grid, edges


def _edges(centres: np.ndarray) -> np.ndarray:
    """Bin edges half-way between centres, extrapolated at both ends."""
    mid = 0.5 * (centres[1:] + centres[:-1])
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def resample(
    wavelength: np.ndarray,
    flux: np.ndarray,
    good: np.ndarray,
    grid: np.ndarray,
    edges: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Flux-conserving resampling of the good pixels onto ``grid``.

    Bad pixels are bridged by linear interpolation between good neighbours; each output
    bin gets the mean of the interpolated flux over its width (the difference of the
    cumulative integral at its edges), which is right whether the grid is finer or coarser
    than the input. ``edges``: ``_edges(grid)`` when the caller has it already.

    Returns:
        (flux on grid, coverage): coverage is the fraction of each output bin that lies
        inside the input's good wavelength range and not in a gap of bad pixels; flux is
        0 where coverage is 0.

    This runs once per spectrum of every request, so it avoids work that most spectra do
    not need (copies when every pixel is good, the gap search when there is no gap); the
    results are the same as the plain formulation (checked in the tests).
    """
    all_good = bool(good.all())
    wl, fx = (wavelength, flux) if all_good else (wavelength[good], flux[good])
    if wl.size < 2:
        return np.zeros_like(grid), np.zeros_like(grid)
    edges = _edges(grid) if edges is None else edges
    step = np.diff(wl)
    trapezoids = (fx[1:] + fx[:-1]) * step  # float64 even for float32 flux
    trapezoids *= 0.5
    cumulative = np.empty(wl.size)
    cumulative[0] = 0.0
    np.cumsum(trapezoids, out=cumulative[1:])
    inside = np.clip(edges, wl[0], wl[-1])
    integral = np.diff(np.interp(inside, wl, cumulative))
    width = np.diff(inside)
    resampled = np.divide(integral, width, out=np.zeros_like(grid), where=width > 0)
    coverage = width / np.diff(edges)
    # Gaps: bins whose centre falls in a run of bad pixels wider than three input pixels
    # (an input pixel: the median step in log wavelength of all pixels, good or bad).
    log_steps = np.diff(np.log(wl))
    all_log_steps = log_steps if all_good else np.diff(np.log(wavelength))
    threshold = 3.0 * _median(all_log_steps)
    near = np.flatnonzero(log_steps > threshold * (1.0 - 1e-9))  # few: gaps and near-gaps
    if near.size:
        # log(ratio), not the difference of logs: a step of exactly 3 pixels must fall on
        # the same side of the threshold as it always has (the models were trained so)
        gaps = near[np.log(wl[near + 1] / wl[near]) > threshold]
        coverage = np.where(_bins_in_gaps(grid, wl, gaps), 0.0, coverage)
    return np.where(coverage > 0, resampled, 0.0), coverage


def resample_many(
    wavelengths: list[np.ndarray],
    fluxes: list[np.ndarray],
    goods: list[np.ndarray],
    grid: np.ndarray,
    edges: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`resample` of many spectra at once, (n, grid.size) each, equal bit for bit.

    The fluxes must share one dtype (the trapezoids are summed in it, as ``resample`` does).
    The good pixels of each spectrum are packed to the left of padded 2D arrays, the
    padding repeats the last good pixel (zero width, so the cumulative integral stays
    flat), and every step that is not a per-spectrum search runs once for the whole batch:
    the Python and numpy call overhead of ``resample`` is most of its cost at LAMOST size.
    """
    n = len(wavelengths)
    edges = _edges(grid) if edges is None else edges
    out_flux = np.zeros((n, grid.size))
    out_coverage = np.zeros((n, grid.size))
    packed = []
    for i, (wavelength, flux, good) in enumerate(zip(wavelengths, fluxes, goods, strict=True)):
        if good.all():
            packed.append((i, wavelength, flux))
        elif np.count_nonzero(good) >= 2:
            packed.append((i, wavelength[good], flux[good]))
    if not packed:
        return out_flux, out_coverage
    rows = np.array([i for i, _, _ in packed])
    sizes = np.array([wl.size for _, wl, _ in packed])
    width_max = int(sizes.max())
    wl = np.empty((len(packed), width_max))
    fx = np.empty((len(packed), width_max), fluxes[0].dtype)
    for row, (_, w, f) in enumerate(packed):
        wl[row, : w.size] = w
        wl[row, w.size :] = w[-1]
        fx[row, : f.size] = f
        fx[row, f.size :] = f[-1]
    step = np.diff(wl, axis=1)
    trapezoids = (fx[:, 1:] + fx[:, :-1]) * step
    trapezoids *= 0.5
    cumulative = np.empty(wl.shape)
    cumulative[:, 0] = 0.0
    np.cumsum(trapezoids, axis=1, out=cumulative[:, 1:])
    first = wl[:, :1]
    last = wl[np.arange(len(packed)), sizes - 1][:, None]
    inside = np.clip(edges[None, :], first, last)
    at_edges = np.empty(inside.shape)
    for row, size in enumerate(sizes):
        at_edges[row] = np.interp(inside[row], wl[row, :size], cumulative[row, :size])
    integral = np.diff(at_edges, axis=1)
    width = np.diff(inside, axis=1)
    resampled = np.divide(integral, width, out=np.zeros(width.shape), where=width > 0)
    coverage = width / np.diff(edges)
    log_steps = np.diff(np.log(wl), axis=1)  # zero in the padding
    threshold = 3.0 * _medians_of_log_steps([wavelengths[i] for i in rows])
    # the gaps of every row at once, as resample() finds them one row at a time
    gap_rows, gaps = np.nonzero(log_steps > threshold[:, None] * (1.0 - 1e-9))
    real = np.log(wl[gap_rows, gaps + 1] / wl[gap_rows, gaps]) > threshold[gap_rows]
    gap_rows, gaps = gap_rows[real], gaps[real]
    low = np.searchsorted(grid, wl[gap_rows, gaps], side="right")
    high = np.searchsorted(grid, wl[gap_rows, gaps + 1], side="right")
    low[gaps == 0] = 0
    high[gaps == sizes[gap_rows] - 2] = grid.size
    delta = np.zeros((len(packed), grid.size + 1), np.int64)
    np.add.at(delta, (gap_rows, low), 1)
    np.add.at(delta, (gap_rows, high), -1)
    coverage[np.cumsum(delta[:, :-1], axis=1) > 0] = 0.0
    out_flux[rows] = np.where(coverage > 0, resampled, 0.0)
    out_coverage[rows] = coverage
    return out_flux, out_coverage


def _medians_of_log_steps(wavelengths: list[np.ndarray]) -> np.ndarray:
    """``_median(np.diff(np.log(w)))`` for each w, one partition per distinct length."""
    medians = np.empty(len(wavelengths))
    by_size: dict[int, list[int]] = {}
    for i, wavelength in enumerate(wavelengths):
        by_size.setdefault(wavelength.size, []).append(i)
    for size, members in by_size.items():
        steps = np.diff(np.log(np.stack([wavelengths[i] for i in members])), axis=1)
        count = size - 1
        middle = count // 2
        if count % 2:
            medians[members] = np.partition(steps, (middle, count - 1), axis=1)[:, middle]
        else:
            parted = np.partition(steps, (middle - 1, middle, count - 1), axis=1)
            medians[members] = (parted[:, middle - 1] + parted[:, middle]) / 2
    return medians


def _bins_in_gaps(grid: np.ndarray, wl: np.ndarray, gaps: np.ndarray) -> np.ndarray:
    """Bins whose centre lies in (wl[i], wl[i + 1]] for a gap i; the first and last gap
    reach out to the ends of the grid (as ``searchsorted(wl, grid) - 1`` clipped does)."""
    low = np.searchsorted(grid, wl[gaps], side="right")
    high = np.searchsorted(grid, wl[gaps + 1], side="right")
    low[gaps == 0] = 0
    high[gaps == wl.size - 2] = grid.size
    delta = np.zeros(grid.size + 1, np.int64)
    np.add.at(delta, low, 1)
    np.add.at(delta, high, -1)
    return np.cumsum(delta[:-1]) > 0


def _median(values: np.ndarray) -> float:
    """np.median of finite values (bit for bit), without its general-purpose overhead.

    The last index is partitioned too, as np.median does (to find NaN): without it,
    numpy's introselect is 30x slower on the near-equal steps of a log-uniform grid.
    """
    n = values.size
    middle = n // 2
    if n % 2:
        return float(np.partition(values, (middle, n - 1))[middle])
    low, high = np.partition(values, (middle - 1, middle, n - 1))[middle - 1 : middle + 1]
    return float((low + high) / 2)


def pseudo_continuum(flux: np.ndarray, coverage: np.ndarray, window: int) -> np.ndarray:
    """Upper envelope of the flux: a running 90th percentile over ``window`` pixels, smoothed.

    Computed on covered pixels only (uncovered ones are filled by interpolation first) so
    that the edges of the coverage do not pull the continuum down. One spectrum of
    :func:`pseudo_continuum_many`.
    """
    return pseudo_continuum_many(flux[None, :], coverage[None, :], window)[0]


#: Most padded pixels (rows x longest input) in one group of ``apply_many``: 32 MB per
#: float64 array, whatever the batch size or the length of a user's text spectrum.
MAX_GROUP_PIXELS = 1 << 22
#: Longest input of a group, relative to its shortest (bounds the padding).
MAX_GROUP_SPREAD = 1.25


def batch_groups(spectra: list[Spectrum]) -> list[list[int]]:
    """Indices of ``spectra`` in groups for :func:`resample_many`: one flux dtype per group,
    lengths within ``MAX_GROUP_SPREAD`` of each other, at most ``MAX_GROUP_PIXELS`` padded
    pixels (a longer spectrum is a group of its own)."""
    order = sorted(
        range(len(spectra)), key=lambda i: (spectra[i].flux.dtype.str, spectra[i].flux.size)
    )
    groups: list[list[int]] = []
    for i in order:
        flux = spectra[i].flux
        if groups:
            first = spectra[groups[-1][0]].flux
            if (
                flux.dtype == first.dtype
                and flux.size <= MAX_GROUP_SPREAD * first.size
                and (len(groups[-1]) + 1) * flux.size <= MAX_GROUP_PIXELS
            ):
                groups[-1].append(i)
                continue
        groups.append([i])
    return groups


def pseudo_continuum_many(flux: np.ndarray, coverage: np.ndarray, window: int) -> np.ndarray:
    """Upper envelope of each row of ``flux`` (n, n_pix): a running 90th percentile over
    ``window`` pixels, smoothed, on the covered pixels (the others filled by interpolation
    first); all ones for a row with fewer than two covered pixels."""
    covered = coverage > 0.5
    counts = np.count_nonzero(covered, axis=1)
    filled = flux.copy()
    index = np.arange(flux.shape[1])
    for row in np.flatnonzero((counts >= 2) & (counts < flux.shape[1])):
        mask = covered[row]
        filled[row] = np.interp(index, index[mask], flux[row, mask])
    envelope = np.empty_like(filled)
    for row in range(len(filled)):
        envelope[row] = ndimage.percentile_filter(filled[row], 90, size=window, mode="nearest")
    smooth = ndimage.uniform_filter1d(envelope, size=window, axis=1, mode="nearest")
    floor = 1e-3 * np.max(np.abs(smooth), axis=1, keepdims=True)
    continuum = np.maximum(smooth, np.where(floor > 0, floor, 1.0))
    continuum[counts < 2] = 1.0
    return continuum


@dataclass(frozen=True)
class StellarPreprocess:
    """Spectrum -> (n_pix, channels) features for the stellar classifier and the GAN.

    The grid is log-uniform over the optical range that LAMOST (3700–9100 Å) and SDSS
    (3800–9200 Å) share with the templates. Channels depend on ``normalisation``:

    * ``"median"``: flux / median covered flux (keeps the continuum slope, i.e. temperature,
      but also reddening and flux-calibration errors);
    * ``"continuum"``: flux / pseudo-continuum - 1 (line strengths only);
    * ``"median+continuum"``: both channels.

    A last channel is the coverage (1 where the input has good flux), so missing ranges are
    visible to the network rather than looking like zero flux. The choice between the
    normalisations was made by measurement (see README, "Stellar model").
    """

    wave_min: float = 3700.0
    wave_max: float = 9100.0
    n_pix: int = 1024
    normalisation: str = "continuum"
    continuum_window: int = 101
    rest_frame: bool = True
    clip: float = 5.0

    @property
    def grid(self) -> np.ndarray:
        return log_grid(self.wave_min, self.wave_max, self.n_pix)

    @property
    def n_channels(self) -> int:
        return len(self.normalisation.split("+")) + 1

    def to_dict(self) -> dict:
        return {"name": "stellar", **asdict(self)}

    def apply(self, spectrum: Spectrum) -> np.ndarray:
        """Features of one spectrum, float32 of shape (n_pix, n_channels)."""
        wavelength = self._rest_wavelength(spectrum)
        grid, edges = _grid_and_edges(self.wave_min, self.wave_max, self.n_pix)
        flux, coverage = resample(wavelength, spectrum.flux, spectrum.good, grid, edges)
        covered = coverage > 0.5
        channels = []
        for kind in self.normalisation.split("+"):
            channels.append(self._normalise(flux, coverage, covered, kind))
        channels.append(covered.astype(np.float64))
        return np.stack(channels, axis=-1).astype(np.float32)

    def apply_many(self, spectra: list[Spectrum]) -> np.ndarray:
        """Features of many spectra, (n, n_pix, n_channels) float32, equal to ``apply`` of
        each bit for bit (see :func:`resample_many`). For 100 LAMOST spectra: 0.22 ms per
        spectrum against 0.27, but 0.40 in a process whose glibc hands freed blocks back
        to the OS at once (see :func:`models.prepare.keep_freed_memory`)."""
        features = np.empty((len(spectra), self.n_pix, self.n_channels), np.float32)
        grid, edges = _grid_and_edges(self.wave_min, self.wave_max, self.n_pix)
        for members in batch_groups(spectra):
            chosen = [spectra[i] for i in members]
            flux, coverage = resample_many(
                [self._rest_wavelength(s) for s in chosen],
                [s.flux for s in chosen],
                [s.good for s in chosen],
                grid,
                edges,
            )
            covered = coverage > 0.5
            channels = []
            for kind in self.normalisation.split("+"):
                if kind == "continuum":
                    continuum = pseudo_continuum_many(flux, coverage, self.continuum_window)
                    normalised = flux / continuum - 1.0
                    channels.append(
                        np.where(covered, np.clip(normalised, -self.clip, self.clip), 0.0)
                    )
                else:
                    rows = zip(flux, coverage, covered, strict=True)
                    channels.append(np.stack([self._normalise(*row, kind) for row in rows]))
            channels.append(covered.astype(np.float64))
            features[members] = np.stack(channels, axis=-1).astype(np.float32)
        return features

    def _rest_wavelength(self, spectrum: Spectrum) -> np.ndarray:
        """Wavelengths shifted to the rest frame when the redshift is stellar (|z| < 0.01)."""
        redshift = spectrum.meta.get("redshift")
        if self.rest_frame and redshift is not None and abs(redshift) < 0.01:
            return spectrum.wavelength / (1.0 + redshift)
        return spectrum.wavelength

    def _normalise(
        self, flux: np.ndarray, coverage: np.ndarray, covered: np.ndarray, kind: str
    ) -> np.ndarray:
        if kind == "median":
            scale = np.median(np.abs(flux[covered])) if covered.any() else 1.0
            normalised = flux / (scale if scale > 0 else 1.0)
        elif kind == "continuum":
            normalised = flux / pseudo_continuum(flux, coverage, self.continuum_window) - 1.0
        else:
            raise ValueError(f"unknown normalisation {kind!r}")
        return np.where(covered, np.clip(normalised, -self.clip, self.clip), 0.0)


def coverage_fraction(features: np.ndarray) -> float:
    """Share of grid pixels covered by the input (the last feature channel)."""
    return float(features[..., -1].mean())


PREPROCESSORS = {
    "stellar": StellarPreprocess,
    "galaxy": GalaxyPreprocess,
    "halpha": HalphaPreprocess,
}


def build_preprocess(spec: dict):
    """Rebuild a preprocessing object from the ``preprocess`` entry of a bundle.json."""
    params = dict(spec)
    name = params.pop("name")
    if name not in PREPROCESSORS:
        raise KeyError(f"unknown preprocessing {name!r}; known: {sorted(PREPROCESSORS)}")
    return PREPROCESSORS[name](**params)
