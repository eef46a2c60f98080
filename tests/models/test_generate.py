"""Generation from a generator bundle: determinism, shapes, FITS / CSV / JSON output."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from flax import nnx

from models.bundle import save_bundle
from models.generate import (
    GeneratorBundleError,
    default_generator_path,
    load_generator,
    spectra_to_csv,
    spectra_to_fits,
    spectra_to_json,
)
from models.nets.gan import GanGenerator
from models.preprocess import StellarPreprocess

REPO = Path(__file__).resolve().parents[2]
KWARGS = {"latent_dim": 8, "n_pix": 1024, "widths": (8, 4, 4)}


@pytest.fixture(scope="module")
def tiny_generator(tmp_path_factory):
    """A bundle holding a randomly initialised small generator (tests the plumbing only)."""
    path = tmp_path_factory.mktemp("gan") / "bundle"
    card = {
        "task": "gan",
        "labels": ["O"],
        "network": {"name": "gan_generator", "kwargs": KWARGS},
        "preprocess": StellarPreprocess().to_dict(),
        "training": {"files": []},
        "metrics": {},
    }
    save_bundle(path, GanGenerator(**KWARGS, rngs=nnx.Rngs(0)), card)
    return load_generator(path)


def test_same_seed_same_spectra_and_prefix_stability(tiny_generator):
    first = tiny_generator.generate(5, seed=7)
    assert first.shape == (5, 1024) and first.dtype == np.float32
    np.testing.assert_array_equal(first, tiny_generator.generate(5, seed=7))
    assert not np.allclose(first, tiny_generator.generate(5, seed=8))
    # Spectrum i depends on (seed, i) only: a longer request extends a shorter one.
    np.testing.assert_allclose(tiny_generator.generate(300, seed=7)[:5], first, atol=1e-6)
    assert len(tiny_generator.generate(1030, seed=1)) == 1030  # beyond the largest bucket


@pytest.mark.parametrize("n", [0, -1, 2.5, True])
def test_bad_n_is_refused(tiny_generator, n):
    with pytest.raises(ValueError, match="n must be a positive integer"):
        tiny_generator.generate(n, seed=0)


def test_bad_seed_is_refused(tiny_generator):
    with pytest.raises(ValueError, match="seed"):
        tiny_generator.generate(2, seed=-1)


def test_a_classifier_bundle_is_not_a_generator():
    with pytest.raises(GeneratorBundleError, match="not 'gan'"):
        load_generator(REPO / "bundles" / "stellar")


def test_fits_carries_wavelength_flux_and_provenance(tiny_generator):
    flux = tiny_generator.generate(3, seed=11)
    with fits.open(io.BytesIO(spectra_to_fits(tiny_generator, flux, seed=11))) as hdus:
        np.testing.assert_array_equal(hdus[0].data, flux)
        np.testing.assert_allclose(hdus["WAVELENGTH"].data, tiny_generator.wavelength)
        header = hdus[0].header
        assert header["BUNDLEID"] == tiny_generator.bundle_id
        assert header["SEED"] == 11 and header["NSPEC"] == 3
        assert header["SYNTHETI"] is True and "SYNTHETIC" in header["OBJECT"]
        assert header["SOFTWARE"].startswith("skysort") and header["DATE"]


def test_csv_and_json_forms(tiny_generator):
    flux = tiny_generator.generate(2, seed=4)
    text = spectra_to_csv(tiny_generator, flux, seed=4)
    comments = [line for line in text.splitlines() if line.startswith("#")]
    assert any("synthetic: True" in line for line in comments)
    rows = list(csv.reader(line for line in text.splitlines() if not line.startswith("#")))
    assert rows[0] == ["wavelength", "spectrum_0", "spectrum_1"]
    assert len(rows) == 1 + 1024
    np.testing.assert_allclose(float(rows[1][2]), flux[1, 0], atol=1e-5)
    payload = json.loads(json.dumps(spectra_to_json(tiny_generator, flux, seed=4)))
    assert payload["model"] == tiny_generator.bundle_id
    assert payload["seed"] == 4 and payload["n"] == 2 and payload["synthetic"] is True
    assert np.asarray(payload["flux"]).shape == (2, 1024)
    assert len(payload["wavelength"]) == 1024 and "continuum" in payload["units"]["flux"]


def test_flux_of_the_wrong_shape_is_refused(tiny_generator):
    with pytest.raises(ValueError, match="flux must be"):
        spectra_to_json(tiny_generator, np.zeros((2, 10)), seed=0)


def test_default_path_honours_skysort_bundles(monkeypatch, tmp_path):
    assert default_generator_path() == REPO / "bundles" / "gan"
    monkeypatch.setenv("SKYSORT_BUNDLES", str(tmp_path))
    assert default_generator_path() == tmp_path / "gan"


def test_default_bundle_generates_o_like_spectra():
    """The committed bundle: 1,000 spectra near the continuum, He II 4686 in absorption.

    The pseudo-continuum is an upper envelope (running 90th percentile), so the typical
    level of a noisy spectrum lies a little below 1.
    """
    generator = load_generator(default_generator_path())
    flux = generator.generate(1000, seed=0)
    assert flux.shape == (1000, generator.wavelength.size)
    assert np.all(np.isfinite(flux))
    assert 0.8 < np.median(flux) < 1.05
    offset = np.abs(generator.wavelength - 4687.0)
    line = flux[:, offset < 5].min(axis=1)
    sides = np.median(flux[:, (offset > 12) & (offset < 35)], axis=1)
    assert np.median(line - sides) < -0.02
    assert generator.card["synthetic"] is True
