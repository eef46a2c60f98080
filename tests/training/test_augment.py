"""Tests for training.augment on synthetic spectra with known answers.

Usage: ``.venv/bin/pytest tests/training/test_augment.py``.
"""

from __future__ import annotations

import copy
import json

import astropy.units as u
import numpy as np
import pytest
from dust_extinction.parameter_averages import G23

from models.io.base import Spectrum
from training.augment import (
    AugmentConfig,
    add_noise,
    augment,
    config_from_dict,
    config_to_dict,
    cut_coverage,
    degrade_resolution,
    mask_pixels,
    redden,
    shift_radial_velocity,
    tilt_flux_calibration,
    truncate_coverage,
)

C_KMS = 299792.458
H_ALPHA = 6564.61


def gaussian_line_spectrum(
    wavelength: np.ndarray, centre: float, sigma: float, depth: float = 0.5
) -> Spectrum:
    """Unit continuum with one Gaussian absorption line; noise-free (ivar 1)."""
    flux = 1.0 - depth * np.exp(-0.5 * ((wavelength - centre) / sigma) ** 2)
    return Spectrum(wavelength, flux, np.ones_like(wavelength), {"source": "text"})


def lamost_like(snr: float = 50.0) -> Spectrum:
    """Log-linear 69 km/s grid 3700-9100 A, sloped continuum, real errors at ``snr``."""
    wavelength = 3700.0 * np.exp(np.arange(0, np.log(9100 / 3700), 69.0 / C_KMS))
    flux = 2.0 - (wavelength - 3700.0) / 5400.0
    flux = flux - 0.6 * np.exp(-0.5 * ((wavelength - H_ALPHA) / 3.0) ** 2)
    ivar = (snr / flux) ** 2
    return Spectrum(wavelength, flux, ivar, {"source": "lamost", "resolving_power": 1800.0})


def line_centroid_and_sigma(spectrum: Spectrum) -> tuple[float, float]:
    """First and second moments of the absorption below the unit continuum."""
    deficit = 1.0 - spectrum.flux
    centre = np.sum(spectrum.wavelength * deficit) / np.sum(deficit)
    variance = np.sum((spectrum.wavelength - centre) ** 2 * deficit) / np.sum(deficit)
    return float(centre), float(np.sqrt(variance))


@pytest.mark.parametrize("velocity", [100.0, -100.0])
def test_shift_radial_velocity_moves_line_by_lambda_v_over_c(velocity: float) -> None:
    wavelength = np.arange(6500.0, 6630.0, 0.5)
    spectrum = gaussian_line_spectrum(wavelength, H_ALPHA, 1.5)
    centre_before, _ = line_centroid_and_sigma(spectrum)
    centre_after, _ = line_centroid_and_sigma(shift_radial_velocity(spectrum, velocity))
    expected_shift = H_ALPHA * velocity / C_KMS  # 2.19 A for 100 km/s
    assert abs(expected_shift) == pytest.approx(2.1897, abs=1e-3)
    assert centre_after - centre_before == pytest.approx(expected_shift, abs=0.01)


def test_redden_drops_blue_to_red_ratio_as_g23() -> None:
    wavelength = np.linspace(3700.0, 9100.0, 2000)
    spectrum = Spectrum(wavelength, np.ones_like(wavelength), np.full_like(wavelength, 4.0))
    reddened = redden(spectrum, 0.3)
    blue, red = np.argmin(np.abs(wavelength - 4000)), np.argmin(np.abs(wavelength - 8000))
    transmission = G23(Rv=3.1).extinguish(wavelength[[blue, red]] * u.AA, Ebv=0.3)
    expected_ratio = transmission[0] / transmission[1]
    assert 0.3 < expected_ratio < 0.6  # dust makes the blue end fainter
    assert reddened.flux[blue] / reddened.flux[red] == pytest.approx(expected_ratio, rel=1e-6)
    assert reddened.ivar[blue] == pytest.approx(4.0 / transmission[0] ** 2, rel=1e-6)


def test_redden_then_deredden_restores_flux_and_ivar() -> None:
    spectrum = lamost_like()
    restored = redden(redden(spectrum, 0.3, r_v=3.1), -0.3, r_v=3.1)
    np.testing.assert_allclose(restored.flux, spectrum.flux, rtol=1e-12)
    np.testing.assert_allclose(restored.ivar, spectrum.ivar, rtol=1e-12)


def test_add_noise_on_flat_noise_free_spectrum_hits_requested_snr() -> None:
    wavelength = np.linspace(4000.0, 8000.0, 20000)
    spectrum = Spectrum(wavelength, np.full_like(wavelength, 10.0), np.ones_like(wavelength))
    noisy = add_noise(spectrum, 30.0, np.random.default_rng(1))
    residual = noisy.flux - spectrum.flux
    measured_snr = np.median(spectrum.flux) / np.std(residual)
    assert measured_snr == pytest.approx(30.0, rel=0.1)
    np.testing.assert_allclose(1.0 / noisy.ivar, (10.0 / 30.0) ** 2, rtol=1e-12)
    assert np.var(residual) == pytest.approx(np.mean(1.0 / noisy.ivar), rel=0.05)


def test_add_noise_combines_with_existing_errors() -> None:
    wavelength = np.linspace(4000.0, 8000.0, 1000)
    flat = np.full_like(wavelength, 10.0)
    spectrum = Spectrum(wavelength, flat, np.full_like(wavelength, (50.0 / 10.0) ** 2))
    noisier = add_noise(spectrum, 20.0, np.random.default_rng(2))
    np.testing.assert_allclose(np.median(noisier.ivar), (20.0 / 10.0) ** 2, rtol=1e-12)
    # Already noisier than requested: no noise can be removed, nothing is added.
    unchanged = add_noise(spectrum, 80.0, np.random.default_rng(2))
    np.testing.assert_array_equal(unchanged.flux, spectrum.flux)
    np.testing.assert_array_equal(unchanged.ivar, spectrum.ivar)


def test_degrade_resolution_widens_line_and_keeps_flux() -> None:
    wavelength = np.arange(4900.0, 5100.0, 0.05)
    spectrum = gaussian_line_spectrum(wavelength, 5000.0, 0.3)
    degraded = degrade_resolution(spectrum, 2000.0, resolving_power_in=20000.0)
    kernel_sigma = 5000.0 * np.sqrt(1 / 2000.0**2 - 1 / 20000.0**2) / 2.3548200450309493
    assert kernel_sigma == pytest.approx(1.0563, abs=1e-3)
    _, sigma_out = line_centroid_and_sigma(degraded)
    assert sigma_out == pytest.approx(np.hypot(0.3, kernel_sigma), rel=0.05)
    total_in = np.trapezoid(spectrum.flux, wavelength)
    assert np.trapezoid(degraded.flux, wavelength) == pytest.approx(total_in, rel=0.01)
    width_in = np.trapezoid(1 - spectrum.flux, wavelength)  # equivalent width
    assert np.trapezoid(1 - degraded.flux, wavelength) == pytest.approx(width_in, rel=0.01)
    assert degraded.meta["resolving_power"] == 2000.0
    assert np.all(degraded.ivar == 1.0)  # the no-errors convention is kept


def test_degrade_resolution_leaves_coarser_spectrum_unchanged() -> None:
    pickles_like = gaussian_line_spectrum(np.arange(3700.0, 9100.0, 5.0), 4862.7, 8.0)
    explicit = degrade_resolution(pickles_like, 1800.0, resolving_power_in=500.0)
    from_sampling = degrade_resolution(pickles_like, 1800.0)  # Nyquist R <= 910 here
    for result in (explicit, from_sampling):
        np.testing.assert_array_equal(result.flux, pickles_like.flux)
        np.testing.assert_array_equal(result.ivar, pickles_like.ivar)


def test_degrade_resolution_of_lamost_like_spectrum_with_masked_nan_pixels() -> None:
    spectrum = lamost_like()
    spectrum.ivar[100:110] = 0.0
    spectrum.flux[100:110] = np.nan
    degraded = degrade_resolution(spectrum, 500.0)  # R_in from meta: 1800
    assert np.all(np.isfinite(degraded.flux))
    assert np.all(degraded.ivar[100:110] == 0.0)
    good = degraded.good
    assert np.all(degraded.ivar[good] > spectrum.ivar[good])  # smoothing averages noise
    near = np.flatnonzero(np.abs(spectrum.wavelength - H_ALPHA) < 100.0)
    line = near[np.argmin(degraded.flux[near])]
    assert degraded.wavelength[line] == pytest.approx(H_ALPHA, abs=1.0)
    assert degraded.flux[line] > np.min(spectrum.flux[near]) + 0.2  # shallower, wider line


def test_tilt_is_positive_smooth_and_of_requested_amplitude() -> None:
    spectrum = lamost_like()
    tilted = tilt_flux_calibration(spectrum, 0.2, np.random.default_rng(3))
    factor = tilted.flux / spectrum.flux
    assert np.all(factor > 0)
    assert np.max(np.abs(factor - 1.0)) == pytest.approx(0.2, rel=1e-9)
    fit = np.polynomial.legendre.Legendre.fit(spectrum.wavelength, factor, 2)
    np.testing.assert_allclose(fit(spectrum.wavelength), factor, atol=1e-9)
    assert np.all(np.abs(np.diff(factor)) < 1e-3)  # no jumps between neighbouring pixels
    np.testing.assert_allclose(tilted.ivar, spectrum.ivar / factor**2, rtol=1e-12)


def test_mask_pixels_only_changes_ivar_in_bounded_segments() -> None:
    spectrum = lamost_like()
    masked = mask_pixels(spectrum, np.random.default_rng(4), 3, 40.0)
    np.testing.assert_array_equal(masked.wavelength, spectrum.wavelength)
    np.testing.assert_array_equal(masked.flux, spectrum.flux)
    zeroed = masked.ivar == 0
    assert zeroed.any()
    np.testing.assert_array_equal(masked.ivar[~zeroed], spectrum.ivar[~zeroed])
    starts = np.flatnonzero(np.diff(zeroed.astype(int)) == 1) + 1
    ends = np.flatnonzero(np.diff(zeroed.astype(int)) == -1)
    assert 1 <= len(starts) <= 3
    assert np.all(masked.wavelength[ends] - masked.wavelength[starts] <= 40.0)
    with_bad = mask_pixels(spectrum, np.random.default_rng(4), 0, 40.0, bad_pixel_fraction=0.05)
    assert 0.03 < np.mean(with_bad.ivar == 0) < 0.07


def test_truncate_coverage_limits_start_and_end() -> None:
    spectrum = lamost_like()
    rng = np.random.default_rng(5)
    starts, ends = [], []
    for _ in range(60):
        cut = truncate_coverage(spectrum, rng, (3700.0, 4200.0), (7000.0, 9100.0))
        assert cut.wavelength.size < spectrum.wavelength.size
        assert cut.wavelength[0] < 4200.0 + 1.0 and cut.wavelength[-1] > 7000.0 - 1.0
        starts.append(cut.wavelength[0])
        ends.append(cut.wavelength[-1])
    assert max(starts) > 4000.0 and min(ends) < 7500.0  # both ends do get cut
    assert min(starts) == spectrum.wavelength[0] and max(ends) == spectrum.wavelength[-1]


def test_cut_coverage_fixed_limits() -> None:
    spectrum = lamost_like()
    red = cut_coverage(spectrum, None, 7427.0)
    assert red.wavelength[-1] <= 7427.0 < spectrum.wavelength[-1]
    assert red.wavelength[0] == spectrum.wavelength[0]
    np.testing.assert_array_equal(red.flux, spectrum.flux[: red.flux.size])
    both = cut_coverage(spectrum, 4000.0, 7000.0)
    assert both.wavelength[0] >= 4000.0 and both.wavelength[-1] <= 7000.0
    assert both.ivar.size == both.wavelength.size == both.flux.size
    # a cut that would leave (almost) nothing is not made
    kept = cut_coverage(spectrum, 9500.0, None)
    assert kept.wavelength.size == spectrum.wavelength.size


def all_steps_config() -> AugmentConfig:
    return AugmentConfig(
        rv_probability=1.0,
        redden_probability=1.0,
        resolution_probability=1.0,
        resolving_power_range=(400.0, 1000.0),
        tilt_probability=1.0,
        truncate_probability=1.0,
        noise_probability=1.0,
        mask_probability=1.0,
    )


def test_augment_is_deterministic_per_seed_and_records_steps() -> None:
    spectrum = lamost_like()
    config = all_steps_config()
    first = augment(spectrum, np.random.default_rng(7), config)
    again = augment(spectrum, np.random.default_rng(7), config)
    other = augment(spectrum, np.random.default_rng(8), config)
    np.testing.assert_array_equal(first.wavelength, again.wavelength)
    np.testing.assert_array_equal(first.flux, again.flux)
    np.testing.assert_array_equal(first.ivar, again.ivar)
    assert first.wavelength.size != other.wavelength.size or not np.array_equal(
        first.flux, other.flux
    )
    names = [step["name"] for step in first.meta["augmentations"]]
    assert names == [
        "radial_velocity", "redden", "degrade_resolution", "tilt", "truncate", "noise", "mask",
    ]  # fmt: skip
    assert np.all(np.isfinite(first.flux)) and np.any(first.ivar == 0)


def test_augment_template_gets_real_errors_at_drawn_snr() -> None:
    template = gaussian_line_spectrum(np.arange(3700.0, 9100.0, 5.0), H_ALPHA, 8.0)
    config = all_steps_config()
    augmented = augment(template, np.random.default_rng(9), config)
    snr = next(s["snr"] for s in augmented.meta["augmentations"] if s["name"] == "noise")
    good = augmented.good
    measured = np.median(np.abs(augmented.flux[good]) * np.sqrt(augmented.ivar[good]))
    assert 10.0 <= snr <= 100.0
    assert measured == pytest.approx(snr, rel=0.15)  # noise moved |flux| a little


def test_ebv_draws_follow_the_truncated_exponential() -> None:
    spectrum = Spectrum(np.linspace(3700.0, 9100.0, 20), np.ones(20), np.ones(20))
    only_dust = AugmentConfig(
        rv_probability=0.0, redden_probability=1.0, tilt_probability=0.0,
        truncate_probability=0.0, noise_probability=0.0, mask_probability=0.0,
        resolution_probability=0.0,
    )  # fmt: skip
    rng = np.random.default_rng(10)
    ebvs = np.array(
        [augment(spectrum, rng, only_dust).meta["augmentations"][0]["ebv"] for _ in range(200)]
    )
    config = AugmentConfig()
    cap, mean = config.ebv_max, config.ebv_mean
    expected_mean = mean - cap * np.exp(-cap / mean) / -np.expm1(-cap / mean)
    assert ebvs.min() >= 0.0 and ebvs.max() <= cap
    assert ebvs.mean() == pytest.approx(expected_mean, rel=0.2)


@pytest.mark.parametrize(
    "transform",
    [
        lambda s, rng: shift_radial_velocity(s, 80.0),
        lambda s, rng: redden(s, 0.2),
        lambda s, rng: degrade_resolution(s, 600.0),
        lambda s, rng: add_noise(s, 20.0, rng),
        lambda s, rng: tilt_flux_calibration(s, 0.1, rng),
        lambda s, rng: mask_pixels(s, rng, 2, 30.0, 0.01),
        lambda s, rng: truncate_coverage(s, rng),
        lambda s, rng: augment(s, rng, all_steps_config()),
    ],
)
def test_input_spectrum_is_never_mutated(transform) -> None:
    spectrum = lamost_like()
    spectrum.meta["augmentations"] = [{"name": "earlier"}]
    before = copy.deepcopy(spectrum)
    result = transform(spectrum, np.random.default_rng(11))
    assert result is not spectrum
    for name in ("wavelength", "flux", "ivar"):
        np.testing.assert_array_equal(getattr(spectrum, name), getattr(before, name))
        assert not np.shares_memory(getattr(result, name), getattr(spectrum, name))
    assert spectrum.meta == before.meta


def test_config_round_trips_through_json_and_validates() -> None:
    config = AugmentConfig(rv_max_kms=120.0, snr_range=(15.0, 60.0))
    restored = config_from_dict(json.loads(json.dumps(config_to_dict(config))))
    assert restored == config
    assert config_to_dict(config)["snr_range"] == [15.0, 60.0]
    with pytest.raises(ValueError, match="noise_probability"):
        AugmentConfig(noise_probability=1.5)
    with pytest.raises(ValueError, match="snr_range"):
        AugmentConfig(snr_range=(50.0, 10.0))
