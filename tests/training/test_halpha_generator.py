"""The H-alpha generator: each class looks as labelled by simple line-shape statistics."""

import numpy as np
import pytest

from models.halpha import HALPHA_LABELS, HALPHA_VACUUM, HalphaPreprocess
from training.halpha_generator import C_KMS, generate_profiles, main, peak_count


def _line_statistics(spectrum, preprocess):
    """On the resampled flux over its median: the extremes within 10 Å of the shifted line,
    the peak count, and the line contrast: the largest departure from the continuum near
    the line over the scatter (about a straight line) farther than 20 Å from it."""
    flux = preprocess.resampled_flux(spectrum)
    flux = flux / np.median(flux)
    grid = preprocess.grid
    centre = HALPHA_VACUUM * (1 + spectrum.meta["radial_velocity"] / C_KMS)
    near, far = np.abs(grid - centre) < 10.0, np.abs(grid - centre) > 20.0
    trend = np.polyval(np.polyfit(grid[far], flux[far], 1), grid[far])
    contrast = np.abs(flux[near] - 1).max() / np.std(flux[far] - trend)
    peaks = peak_count(grid, flux, centre, sigma=0.1)
    return flux[near].min() - 1, flux[near].max() - 1, peaks, contrast


@pytest.mark.parametrize("instrument", ["ccd700", "lamost"])
def test_generated_classes_look_as_labelled(instrument):
    spectra, labels = generate_profiles(60, seed=3, instrument=instrument)
    preprocess = HalphaPreprocess()
    stats = {name: [] for name in HALPHA_LABELS}
    for spectrum, label in zip(spectra, labels, strict=True):
        assert spectrum.meta["label"] == HALPHA_LABELS[label] and spectrum.meta["simulated"]
        stats[HALPHA_LABELS[label]].append(_line_statistics(spectrum, preprocess))
    low, high, peaks, contrast = (np.array(v) for v in zip(*stats["absorption"], strict=True))
    assert np.mean((low < -0.08) & (high < 0.05) & (contrast > 5)) >= 0.95
    low, high, peaks, contrast = (np.array(v) for v in zip(*stats["emission"], strict=True))
    assert np.mean((high > 0.15) & (contrast > 5)) >= 0.95 and np.mean(peaks == 1) >= 0.8
    low, high, peaks, contrast = (np.array(v) for v in zip(*stats["double-peak"], strict=True))
    assert np.mean((high > 0.15) & (contrast > 5)) >= 0.95 and np.mean(peaks >= 2) >= 0.8
    low, high, peaks, contrast = (np.array(v) for v in zip(*stats["noise"], strict=True))
    assert np.mean(contrast < 4) >= 0.95  # nothing stands out of the noise


def test_generator_is_reproducible_and_balanced():
    first, labels = generate_profiles(5, seed=7, instrument="lamost")
    second, _ = generate_profiles(5, seed=7, instrument="lamost")
    assert np.bincount(labels).tolist() == [5, 5, 5, 5]
    assert all(np.array_equal(a.flux, b.flux) for a, b in zip(first, second, strict=True))
    assert first[0].meta["source"] == "simulated-lamost"  # not degraded again
    assert not HalphaPreprocess().degrades(first[0])


def test_plot_of_generated_vs_real_is_written(tmp_path, data_dir):
    out = tmp_path / "generated_vs_real.png"
    assert main(["--data", str(data_dir / "ondrejov"), "--out", str(out)]) == 0
    from PIL import Image

    image = np.asarray(Image.open(out).convert("L"))
    assert image.shape[1] > 1000 and (image < 100).mean() > 0.01
