"""Ondřejov CCD700 reader: raw 1D images and normalised tables, air -> vacuum."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.io import SpectrumReadError, read_spectrum

RAW = "ondrejov/fits_raw_ccd700/ua280060.fits"
RAW_HD208905 = "ondrejov/fits_raw_ccd700/oe270005.fits"
TABLE = "ondrejov/fits_normalized_halpha/ub240016.fits"


def test_raw_linear_wcs_air_to_vacuum_shift_at_halpha(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / RAW)
    header = fits.getheader(data_dir / RAW)
    air = header["CRVAL1"] + np.arange(header["NAXIS1"]) * header["CDELT1"]
    assert air[0] == pytest.approx(6252.97384602315)
    pixel = int(np.argmin(np.abs(air - 6563.0)))
    assert spectrum.wavelength[pixel] - air[pixel] == pytest.approx(1.81, abs=0.01)
    assert np.all(spectrum.wavelength - air > 1.7) and np.all(spectrum.wavelength - air < 1.9)
    np.testing.assert_array_equal(spectrum.flux, fits.getdata(data_dir / RAW))
    meta = spectrum.meta
    assert meta["source"] == "ondrejov" and meta["format"] == "ondrejov_raw_1d"
    assert meta["object_id"] == "17 Sex" and meta["wavelength_medium_original"] == "air"
    assert meta["flux_normalised"] is False and meta["flux_unit"] == "ADU"


def test_raw_sexagesimal_coordinates(data_dir: Path) -> None:
    meta = read_spectrum(data_dir / RAW_HD208905).meta
    assert meta["object_id"] == "HD 208905"
    assert meta["ra"] == pytest.approx(21.955056 * 15, abs=1e-4)  # '21:57:18.2'
    assert meta["dec"] == pytest.approx(61.294361, abs=1e-5)  # '61:17:39.7'


def test_normalised_table_is_air_and_converted(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / TABLE)
    table = fits.getdata(data_dir / TABLE, 1)
    shift = spectrum.wavelength - table["spectral"]
    assert shift[np.argmin(np.abs(table["spectral"] - 6563.0))] == pytest.approx(1.81, abs=0.01)
    np.testing.assert_array_equal(spectrum.flux, table["flux"])
    assert spectrum.meta["flux_normalised"] is True
    assert spectrum.meta["object_id"] == "HR 3135"
    assert spectrum.meta["ivo_id"] == "ivo://asu.cas.cz/stel/ccd700/ub240016"
    assert np.median(spectrum.flux) == pytest.approx(1.0, abs=0.05)


def test_every_ondrejov_file_matches_index_csv(data_dir: Path) -> None:
    with open(data_dir / "ondrejov/index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 27
    for row in rows:
        spectrum = read_spectrum(data_dir / "ondrejov" / row["file"])
        assert spectrum.wavelength.size == int(row["n_pix"]), row["file"]
        # index.csv gives air wavelengths; ours are vacuum, ~1.74 A redder at 6280-6780 A.
        assert spectrum.wavelength[0] - float(row["wave_min"]) == pytest.approx(1.74, abs=0.05)
        assert spectrum.meta["object_id"] == row["object"]


def test_raw_without_wavelength_keywords_is_no_spectral_axis(data_dir: Path, tmp_path) -> None:
    with fits.open(data_dir / RAW) as hdus:
        for key in ("CRVAL1", "CDELT1", "CD1_1"):
            del hdus[0].header[key]
        hdus.writeto(tmp_path / "no-wcs.fits")
    with pytest.raises(SpectrumReadError, match="no-wcs.fits: no spectral axis: 1D image"):
        read_spectrum(tmp_path / "no-wcs.fits")
