"""Preprocessing invariants: grid, flux-conserving resampling, coverage, normalisation."""

import numpy as np
import pytest

from models.io.base import Spectrum
from models.preprocess import StellarPreprocess, build_preprocess, log_grid, resample


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
