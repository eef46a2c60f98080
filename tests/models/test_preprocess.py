"""Preprocessing invariants: grid, flux-conserving resampling, coverage, normalisation."""

import numpy as np
import pytest

from models.io import read_spectrum
from models.io.base import Spectrum
from models.preprocess import (
    MAX_GROUP_PIXELS,
    StellarPreprocess,
    batch_groups,
    build_preprocess,
    log_grid,
    resample,
    resample_many,
)


def _flat(wave_min=3500.0, wave_max=9500.0, n=6000, level=3.0):
    wavelength = np.linspace(wave_min, wave_max, n)
    return Spectrum(wavelength, np.full(n, level), np.ones(n), {})


def test_log_grid_is_log_uniform_and_spans_range():
    grid = log_grid(3700.0, 9100.0, 2048)
    steps = np.diff(np.log10(grid))
    assert grid[0] == pytest.approx(3700.0) and grid[-1] == pytest.approx(9100.0)
    assert np.allclose(steps, steps[0])


def test_resample_conserves_a_linear_function_and_marks_coverage():
    wavelength = np.linspace(4000.0, 8000.0, 3000)
    flux = 2.0 + 1e-3 * wavelength
    grid = log_grid(3700.0, 9100.0, 512)
    out, coverage = resample(wavelength, flux, np.ones_like(flux, bool), grid)
    inside = (grid > 4010) & (grid < 7990)
    assert np.allclose(out[inside], 2.0 + 1e-3 * grid[inside], rtol=2e-3)
    assert np.all(coverage[grid < 3990] == 0) and np.all(coverage[grid > 8010] == 0)
    assert np.all(out[coverage == 0] == 0)


def test_resample_bridges_single_bad_pixels_but_not_wide_gaps():
    wavelength = np.linspace(3600.0, 9200.0, 4000)
    flux = np.ones_like(wavelength)
    good = np.ones_like(wavelength, bool)
    good[1000] = False
    good[2500:2600] = False
    grid = log_grid(3700.0, 9100.0, 1024)
    _, coverage = resample(wavelength, flux, good, grid)
    gap = (grid > wavelength[2505]) & (grid < wavelength[2595])
    single = np.argmin(np.abs(grid - wavelength[1000]))
    assert np.all(coverage[gap] == 0)
    assert coverage[single] == pytest.approx(1.0)


def test_features_shape_channels_and_scale_invariance():
    pre = StellarPreprocess(n_pix=1024, normalisation="median+continuum")
    spectrum = _flat()
    features = pre.apply(spectrum)
    scaled = pre.apply(Spectrum(spectrum.wavelength, 1e-16 * spectrum.flux, spectrum.ivar, {}))
    assert features.shape == (1024, 3) and features.dtype == np.float32
    assert np.allclose(features[:, 0], 1.0)  # median normalisation
    assert np.allclose(features[:, 1], 0.0, atol=1e-6)  # flat continuum -> no lines
    assert np.allclose(features, scaled, atol=1e-5)


def test_rest_frame_shift_uses_stellar_redshift_only():
    pre = StellarPreprocess(n_pix=1024, normalisation="continuum")
    wavelength = np.linspace(3600.0, 9200.0, 8000)
    line = 1.0 - 0.5 * np.exp(-0.5 * ((wavelength - 6564.6 * (1 + 5e-4)) / 3.0) ** 2)
    shifted = Spectrum(wavelength, line, np.ones_like(line), {"redshift": 5e-4})
    features = pre.apply(shifted)
    centre = pre.grid[np.argmin(features[:, 0])]
    assert centre == pytest.approx(6564.6, abs=3.0)


def test_bundle_round_trip_of_the_spec():
    pre = StellarPreprocess(n_pix=777, normalisation="median")
    assert build_preprocess(pre.to_dict()) == pre
    assert pre.n_channels == 2


def _plain_resample(wavelength, flux, good, grid):
    """The straightforward formulation that models.preprocess.resample must equal."""
    wl, fx = wavelength[good], flux[good]
    mid = 0.5 * (grid[1:] + grid[:-1])
    edges = np.concatenate([[2 * grid[0] - mid[0]], mid, [2 * grid[-1] - mid[-1]]])
    cumulative = np.concatenate([[0.0], np.cumsum(0.5 * (fx[1:] + fx[:-1]) * np.diff(wl))])
    inside = np.clip(edges, wl[0], wl[-1])
    integral = np.diff(np.interp(inside, wl, cumulative))
    width = np.diff(inside)
    resampled = np.divide(integral, width, out=np.zeros_like(grid), where=width > 0)
    coverage = width / np.diff(edges)
    log_step = np.median(np.diff(np.log(wavelength)))
    gap_left = np.clip(np.searchsorted(wl, grid) - 1, 0, wl.size - 2)
    gap_width = np.log(wl[gap_left + 1] / wl[gap_left])
    coverage = np.where(gap_width > 3.0 * log_step, 0.0, coverage)
    return np.where(coverage > 0, resampled, 0.0), coverage


def _random_spectrum(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(300, 5000))
    start, stop = rng.uniform(3000, 5000), rng.uniform(6000, 10000)
    # log-uniform like LAMOST and SDSS, or linear like the text files
    spacing = np.geomspace if seed % 3 == 0 else np.linspace
    wavelength = spacing(start, stop, n)
    flux = rng.normal(1.0, 0.2, n).astype(np.float32 if seed % 2 else np.float64)
    good = np.ones(n, bool)
    for _ in range(int(rng.integers(0, 12))):  # bad runs of 1-4 pixels (3-pixel steps are
        first = int(rng.integers(0, n - 5))  # the tie the gap rule must keep) and wide ones
        good[first : first + int(rng.choice([1, 2, 3, 4, 60]))] = False
    if seed == 5:
        good[:] = True
    if seed == 6:  # a LAMOST grid with many 2-pixel holes: steps of exactly 3 pixels
        wavelength = 10.0 ** (3.5682 + 1e-4 * np.arange(n))
        good = np.ones(n, bool)
        for first in range(10, n - 3, 37):
            good[first : first + 2] = False
    return wavelength, flux, good


@pytest.mark.parametrize("seed", range(12))
def test_resample_equals_the_plain_formulation_bit_for_bit(seed):
    wavelength, flux, good = _random_spectrum(seed)
    grid = log_grid(3700.0, 9100.0, 1024)
    expected = _plain_resample(wavelength, flux, good, grid)
    got = resample(wavelength, flux, good, grid)
    assert np.array_equal(got[0], expected[0]) and np.array_equal(got[1], expected[1])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_resample_many_equals_resample_bit_for_bit(dtype):
    spectra = [_random_spectrum(seed) for seed in range(12)]
    spectra = [(w, f.astype(dtype), g) for w, f, g in spectra]
    # and the edge cases: one good pixel (nothing to resample), outside the grid
    spectra.append((np.linspace(4000, 5000, 50), np.ones(50, dtype), np.arange(50) == 7))
    spectra.append((np.linspace(10000, 12000, 50), np.ones(50, dtype), np.ones(50, bool)))
    grid = log_grid(3700.0, 9100.0, 1024)
    flux, coverage = resample_many(*zip(*spectra, strict=True), grid)
    for i, (wavelength, f, good) in enumerate(spectra):
        expected = resample(wavelength, f, good, grid)
        assert np.array_equal(flux[i], expected[0]), i
        assert np.array_equal(coverage[i], expected[1]), i
    assert coverage[12].sum() == 0 and coverage[13].sum() == 0
    assert (coverage[:12].sum(axis=1) > 100).all()


@pytest.mark.parametrize("normalisation", ["continuum", "median+continuum"])
def test_apply_many_equals_apply_on_real_spectra(data_dir, normalisation):
    files = sorted((data_dir / "lamost").rglob("spec-*.fits*"))[:40]
    files += sorted((data_dir / "sdss").rglob("spec*.fit*"))
    files += sorted((data_dir / "jhc_mk_dwarfs").glob("*.txt"))[:3]
    spectra = [read_spectrum(f) for f in files]
    spectra += [  # flux of another dtype goes through in its own group
        Spectrum(s.wavelength, s.flux.astype(np.float32), s.ivar, s.meta) for s in spectra[:3]
    ]
    pre = StellarPreprocess(normalisation=normalisation)
    many = pre.apply_many(spectra)
    assert many.shape == (len(spectra), pre.n_pix, pre.n_channels)
    for spectrum, features in zip(spectra, many, strict=True):
        assert np.array_equal(features, pre.apply(spectrum))


def test_batch_groups_bound_the_padding_and_the_memory():
    def spectrum(n, dtype=np.float64):
        wavelength = np.linspace(3600.0, 9200.0, n)
        return Spectrum(wavelength, np.ones(n, dtype), np.ones(n))

    spectra = [spectrum(3904) for _ in range(2000)] + [spectrum(3909), spectrum(2799)]
    spectra += [spectrum(3904, np.float32), spectrum(3_000_000), spectrum(12)]
    groups = batch_groups(spectra)
    assert sorted(i for group in groups for i in group) == list(range(len(spectra)))
    for group in groups:
        sizes = [spectra[i].flux.size for i in group]
        assert len({spectra[i].flux.dtype for i in group}) == 1
        assert max(sizes) <= 1.25 * min(sizes)
        assert len(group) == 1 or len(group) * max(sizes) <= MAX_GROUP_PIXELS
    # alone: the short one, the other dtype, the 3-million-pixel one, the 12-pixel one
    assert all([i] in groups for i in (2001, 2002, 2003, 2004))
    assert len(groups) == 6  # and 2,001 LAMOST-sized rows in two groups of <= 1,074
