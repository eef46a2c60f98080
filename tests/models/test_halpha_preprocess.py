"""H-alpha preprocessing against hand-computed values: air->vacuum, window, degradation,
scaling, errors; and the default bundle on real Ondřejov and LAMOST files."""

import numpy as np
import pytest

from models.halpha import HalphaPreprocess
from models.io import read_spectrum
from models.io.base import Spectrum, SpectrumReadError
from models.prepare import prepare, spectrum_warnings
from models.preprocess import air_to_vacuum, build_preprocess

ONDREJOV = "ondrejov/fits_normalized_halpha"


def _spectrum(wavelength, flux, source="lamost"):
    return Spectrum(wavelength, flux, np.ones_like(wavelength), {"source": source})


def test_air_to_vacuum_at_halpha_matches_nist():
    # H-alpha (NIST, mean of the fine-structure pair): 6562.80 Å in air, 6564.61 Å in vacuum.
    assert air_to_vacuum(np.array([6562.80]))[0] == pytest.approx(6564.61, abs=0.005)


def test_ondrejov_reader_returns_vacuum_wavelengths(data_dir):
    from astropy.io import fits

    path = data_dir / ONDREJOV / "ub240016.fits"
    air = fits.getdata(path, 1)["spectral"].astype(float)
    spectrum = read_spectrum(path)
    assert np.allclose(spectrum.wavelength, air_to_vacuum(air))
    shift = np.interp(6563.0, air, spectrum.wavelength - air)
    assert shift == pytest.approx(1.81, abs=0.01)


def test_linear_flux_maps_onto_the_window_and_scales_to_unit_range():
    wavelength = np.linspace(6400.0, 6800.0, 3000)
    features = HalphaPreprocess().apply(_spectrum(wavelength, 5.0 + 0.01 * wavelength))
    grid = np.linspace(6519.0, 6732.0, 140)
    assert features.shape == (140, 1) and features.dtype == np.float32
    assert features[0, 0] == pytest.approx(-1.0) and features[-1, 0] == pytest.approx(1.0)
    assert np.allclose(features[:, 0], 2 * (grid - 6519.0) / 213.0 - 1, atol=1e-5)


def test_gaussian_degradation_applies_to_ccd700_only():
    step = 0.25
    preprocess = HalphaPreprocess()
    centre = preprocess.grid[70]  # an output point, so that plain interpolation keeps it
    wavelength = np.arange(6400.0, 6800.0, step) + (centre - 6400.0) % step
    flux = np.ones_like(wavelength)
    flux[np.argmin(np.abs(wavelength - centre))] = 101.0  # a one-pixel spike
    degraded = preprocess.resampled_flux(_spectrum(wavelength, flux, "ondrejov")) - 1.0
    kept = preprocess.resampled_flux(_spectrum(wavelength, flux, "lamost")) - 1.0
    grid = preprocess.grid
    sigma = np.sqrt(np.sum(degraded * (grid - centre) ** 2) / np.sum(degraded))
    # 7 pixels of 0.25 Å = 1.75 Å, widened a little by the 1.53 Å output sampling.
    assert sigma == pytest.approx(7 * step, rel=0.15)
    assert kept.max() > 5 * degraded.max()  # linear interpolation of the raw spike
    assert HalphaPreprocess(degrade_sigma_pixels=0).resampled_flux(
        _spectrum(wavelength, flux, "ondrejov")
    ) == pytest.approx(kept + 1.0)


def test_spectrum_not_covering_the_window_is_a_clear_error():
    wavelength = np.linspace(6550.0, 6800.0, 500)
    with pytest.raises(SpectrumReadError, match=r"covers 6550.0-6800.0 .* needs 6519-6732"):
        HalphaPreprocess().apply(_spectrum(wavelength, np.ones(500) + wavelength * 1e-3))


def test_masked_window_and_constant_flux_are_errors():
    wavelength = np.linspace(6400.0, 6800.0, 800)
    spectrum = _spectrum(wavelength, 1.0 + 1e-4 * wavelength)
    spectrum.ivar[(wavelength > 6540) & (wavelength < 6600)] = 0.0
    with pytest.raises(SpectrumReadError, match="has no good pixel"):
        HalphaPreprocess().apply(spectrum)
    with pytest.raises(SpectrumReadError, match="constant"):
        HalphaPreprocess().apply(_spectrum(wavelength, np.full(800, 3.0)))


def test_preprocess_spec_round_trips_through_bundle_json():
    spec = HalphaPreprocess(degrade_sigma_pixels=5.0).to_dict()
    assert spec["name"] == "halpha" and spec["degrade_sources"] == ["ondrejov"]
    assert build_preprocess(spec) == HalphaPreprocess(degrade_sigma_pixels=5.0)


def test_prepare_names_the_file_and_skips_the_stellar_coverage_warning(data_dir):
    preprocessors = {"halpha": HalphaPreprocess()}
    good = prepare(data_dir / ONDREJOV / "gamma-cas-emission.fits", preprocessors, "halpha")
    assert good.error is None and good.features.shape == (140, 1) and good.warnings == []
    masked = data_dir / "lamost/dr1_learninglamost/spec-55862-B6212_sp06-117.fits"
    bad = prepare(masked, preprocessors, "halpha")
    assert bad.error.startswith("spec-55862-B6212_sp06-117.fits: ")
    assert "no good pixel" in bad.error
    spectrum = read_spectrum(data_dir / ONDREJOV / "ub240016.fits")
    assert spectrum_warnings(spectrum, good.features, "halpha") == []


def test_default_bundle_classifies_real_profiles(data_dir):
    from models.bundle import load_bundle
    from models.inference import classify_files

    predictor = load_bundle(data_dir.parent / "bundles" / "halpha")
    files = [
        data_dir / ONDREJOV / "gamma-cas-emission.fits",
        data_dir / "ondrejov/fits_raw_ccd700/oe270005.fits",
        data_dir / "lamost/dr1_learninglamost/spec-55862-B6212_sp06-008.fits",  # F5 star
    ]
    results = classify_files(files, {"halpha": predictor}, "halpha")
    assert [r["label"] for r in results] == ["emission", "absorption", "absorption"]
    assert all(r["task"] == "halpha" and r["model"].startswith("halpha-") for r in results)
