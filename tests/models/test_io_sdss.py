"""SDSS reader on the real spec and spSpec files in data/sdss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.io import SpectrumReadError, read_spectrum

A0_STAR = "sdss/dr12_sdss_spec-0266-51630-0015.fits"
M3_GIANT = "sdss/spec-4055-55359-0027.fits"
GALAXY = "sdss/spec-0266-51602-0001.fits"
SPSPEC = "sdss/spSpec-51630-0266-637.fit"


def test_spec_wavelength_is_ten_to_the_loglam(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / A0_STAR)
    coadd = fits.getdata(data_dir / A0_STAR, "COADD")
    np.testing.assert_allclose(spectrum.wavelength, 10.0 ** coadd["loglam"].astype(np.float64))
    assert spectrum.wavelength[0] == pytest.approx(3823.84, abs=0.01)
    assert spectrum.wavelength[-1] == pytest.approx(9210.85, abs=0.01)
    np.testing.assert_array_equal(spectrum.flux, coadd["flux"])


def test_spec_meta_comes_from_specobj_not_plate_centre(data_dir: Path) -> None:
    meta = read_spectrum(data_dir / A0_STAR).meta
    assert meta["source"] == "sdss" and meta["format"] == "sdss_spec"
    assert (meta["pipeline_class"], meta["pipeline_subclass"]) == ("STAR", "A0")
    assert meta["redshift"] == pytest.approx(0.000600524595938623, rel=1e-6)
    assert meta["ra"] == pytest.approx(146.91375)  # PLUG_RA; header RA 145.89 is the plate
    assert meta["dec"] == pytest.approx(-0.64448137)
    assert meta["object_id"] == "299493525735630848"
    assert meta["snr"]["g"] == pytest.approx(20.605007) and meta["snr"]["all"] == pytest.approx(
        20.264835
    )
    assert meta["summary_hdu"] == "SPECOBJ" and meta["wavelength_medium_original"] == "vacuum"


def test_and_mask_zeroes_ivar(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / A0_STAR)
    coadd = fits.getdata(data_dir / A0_STAR, "COADD")
    masked = coadd["and_mask"] != 0
    assert masked.sum() == 89
    assert np.all(spectrum.ivar[masked] == 0)
    np.testing.assert_array_equal(spectrum.ivar[~masked], coadd["ivar"][~masked])


def test_boss_spall_file(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / M3_GIANT)
    meta = spectrum.meta
    assert meta["summary_hdu"] == "SPALL"
    assert (meta["pipeline_class"], meta["pipeline_subclass"]) == ("STAR", "M3III (44478)")
    assert meta["object_id"] == "4055-55359-0027" and meta["pipeline_version"] == "v5_4_45"
    assert spectrum.wavelength[0] == pytest.approx(3571.9, abs=0.1)
    assert spectrum.wavelength[-1] == pytest.approx(10311.0, abs=0.1)


def test_galaxy_without_subclass_has_no_subclass_key(data_dir: Path) -> None:
    meta = read_spectrum(data_dir / GALAXY).meta
    assert meta["pipeline_class"] == "GALAXY" and "pipeline_subclass" not in meta
    assert meta["redshift"] == pytest.approx(0.02127545, rel=1e-6)


def test_spspec_rows_and_coeff(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / SPSPEC)
    rows = fits.getdata(data_dir / SPSPEC).astype(np.float64)
    assert spectrum.wavelength[0] == pytest.approx(10**3.5794)
    assert spectrum.wavelength.size == 3855
    np.testing.assert_array_equal(spectrum.flux, rows[0])
    usable = spectrum.ivar > 0
    np.testing.assert_allclose(spectrum.ivar[usable], 1.0 / rows[2][usable] ** 2)
    assert np.all(spectrum.ivar[rows[2] == 0] == 0)
    emission_only = np.rint(rows[3]).astype(np.int64) == 1 << 30
    assert emission_only.any() and np.all(spectrum.ivar[emission_only & (rows[2] > 0)] > 0)
    meta = spectrum.meta
    assert meta["format"] == "sdss_spspec" and meta["pipeline_class"] == "GALAXY"
    assert meta["redshift"] == pytest.approx(0.0880307)
    assert meta["ra"] == pytest.approx(147.31446) and meta["object_id"] == "0266-51630-637"


def test_spec_without_coadd_table_is_wrong_layout(data_dir: Path, tmp_path: Path) -> None:
    with fits.open(data_dir / GALAXY) as hdus:
        fits.HDUList([hdus[0].copy(), hdus["SPECOBJ"].copy()]).writeto(tmp_path / "no-coadd.fits")
    with pytest.raises(SpectrumReadError, match="no-coadd.fits: SDSS file with an unrecognised"):
        read_spectrum(tmp_path / "no-coadd.fits")
