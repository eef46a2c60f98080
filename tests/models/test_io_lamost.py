"""LAMOST reader on the real files in data/lamost (all pipeline versions and layouts)."""

from __future__ import annotations

import csv
import gzip
import warnings
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.io import SpectrumReadError, read_spectrum

DR1_M0 = "lamost/dr1_learninglamost/spec-55862-B6212_sp06-005.fits"
DR2_V264 = "lamost/dr2_spectraml/spec-55939-B5593905_sp01-018.fits"
DR2_UNKNOWN = "lamost/dr2_spectraml/spec-55919-B5591903_sp01-001.fits"
DR6_GZ = "lamost/dr6_dr7_laspec/spec-57287-KP193637N444141V03_sp10-161.fits.gz"
DR7_LRS = "lamost/dr6_dr7_laspec/spec-58397-EG014118N254444M01_sp03-031.fits"
DR7_MRS = "lamost/dr6_dr7_laspec/med-58408-TD230151N343645T01_sp01-015.fits"


def _index(data_dir: Path) -> list[dict[str, str]]:
    with open(data_dir / "lamost/index.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_dr1_wavelength_comes_from_coeff_3700_to_9089(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / DR1_M0)
    assert spectrum.wavelength.dtype == np.float64 and spectrum.flux.dtype == np.float64
    assert spectrum.wavelength.size == 3904
    assert spectrum.wavelength[0] == pytest.approx(10**3.5682, abs=1e-9)
    assert spectrum.wavelength[-1] == pytest.approx(10 ** (3.5682 + 1e-4 * 3903), abs=1e-6)
    assert spectrum.wavelength[-1] == pytest.approx(9088.66, abs=0.01)
    assert np.all(np.diff(spectrum.wavelength) > 0)
    meta = spectrum.meta
    assert meta["source"] == "lamost" and meta["format"] == "lamost_lrs_image"
    assert (meta["pipeline_class"], meta["pipeline_subclass"]) == ("STAR", "M0")
    assert meta["pipeline_version"] == "v2.6.4"
    assert meta["object_id"] == "LAMOST J063759.87+270908.4"
    assert meta["redshift"] == pytest.approx(-0.0002856)
    assert meta["snr"] == pytest.approx({"u": 2.36, "g": 6.19, "r": 19.68, "i": 35.63, "z": 33.76})
    assert meta["ra"] == pytest.approx(99.499478) and meta["dec"] == pytest.approx(27.152342)


@pytest.mark.parametrize("name", [DR1_M0, DR2_V264])
def test_v264_row2_is_normalised_flux_and_is_not_used(data_dir: Path, name: str) -> None:
    spectrum = read_spectrum(data_dir / name)
    row2 = fits.getdata(data_dir / name)[2]
    assert np.nanmax(np.abs(row2)) < 10  # a normalised flux, nowhere near 3700-9100 A
    assert spectrum.wavelength.min() > 3699 and not np.allclose(spectrum.wavelength, row2)
    assert spectrum.meta["pipeline_version"] == "v2.6.4"


def test_flux_and_ivar_are_rows_0_and_1(data_dir: Path) -> None:
    rows = fits.getdata(data_dir / DR7_LRS).astype(np.float64)
    spectrum = read_spectrum(data_dir / DR7_LRS)
    np.testing.assert_array_equal(spectrum.flux, rows[0])
    np.testing.assert_array_equal(spectrum.ivar, np.where(rows[3] != 0, 0.0, rows[1]))
    # In 2.7.5 / v2.9.7 files row 2 is the wavelength: it agrees with COEFF to float32 precision.
    np.testing.assert_allclose(spectrum.wavelength, rows[2], atol=0.01)


def test_andmask_pixels_get_zero_ivar(data_dir: Path) -> None:
    masked_files = []
    for path in sorted((data_dir / "lamost/dr1_learninglamost").glob("*.fits")):
        rows = fits.getdata(path)
        if np.any(rows[3] != 0):
            masked_files.append(path)
            spectrum = read_spectrum(path)
            assert np.all(spectrum.ivar[rows[3] != 0] == 0)
            assert np.any(spectrum.ivar[(rows[3] == 0) & (rows[1] > 0)] > 0)
    assert len(masked_files) == 7


def test_every_lamost_file_matches_index_csv(data_dir: Path) -> None:
    rows = _index(data_dir)
    assert len(rows) == 125
    for row in rows:
        spectrum = read_spectrum(data_dir / "lamost" / row["file"])
        meta = spectrum.meta
        assert meta.get("pipeline_class", "") == row["pipeline_class"], row["file"]
        assert meta.get("pipeline_subclass", "") == row["pipeline_subclass"], row["file"]
        assert spectrum.wavelength[0] == pytest.approx(float(row["wave_min"]), abs=0.1)
        assert spectrum.wavelength[-1] == pytest.approx(float(row["wave_max"]), abs=0.1)
        if row["n_pix"]:
            assert spectrum.wavelength.size == int(float(row["n_pix"]))
        if row["snr_g"]:
            assert meta["snr"]["g"] == pytest.approx(float(row["snr_g"]))
        assert spectrum.good.any()


def test_class_unknown_file_is_still_a_spectrum(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / DR2_UNKNOWN)
    assert spectrum.meta["pipeline_class"] == "Unknown"
    assert spectrum.meta["pipeline_subclass"] == "Non"
    assert "redshift" not in spectrum.meta  # Z = -9999 is a missing value
    assert spectrum.good.sum() == 3909 - 1735  # pixels with ivar > 0 in the file


def test_dr6_gz_and_dr7_headers(data_dir: Path) -> None:
    dr6 = read_spectrum(data_dir / DR6_GZ)
    assert dr6.meta["obsid"] == 359910161 and dr6.meta["data_release"] == "LAMOST DR6"
    assert dr6.meta["pipeline_subclass"] == "F5" and dr6.meta["snr"]["g"] == pytest.approx(87.63)
    dr7 = read_spectrum(data_dir / DR7_LRS)
    assert dr7.meta["obsid"] == 677503031 and dr7.meta["pipeline_version"] == "v2.9.7"
    assert dr7.meta["snr"]["r"] == pytest.approx(241.09)


def test_gzip_and_plain_read_identically(data_dir: Path, gzip_copy, write_file) -> None:
    plain = read_spectrum(data_dir / DR1_M0)
    zipped = read_spectrum(gzip_copy(data_dir / DR1_M0))
    for name in ("wavelength", "flux", "ivar"):
        np.testing.assert_array_equal(getattr(plain, name), getattr(zipped, name))
    assert plain.meta == zipped.meta
    unzipped = write_file("dr6.fits", gzip.decompress((data_dir / DR6_GZ).read_bytes()))
    np.testing.assert_array_equal(
        read_spectrum(unzipped).flux, read_spectrum(data_dir / DR6_GZ).flux
    )


def test_medium_resolution_file_concatenates_blue_and_red(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / DR7_MRS)
    meta = spectrum.meta
    assert meta["format"] == "lamost_mrs" and meta["resolution"] == "medium"
    assert meta["snr"] == pytest.approx({"B": 120.75, "R": 280.75})
    assert "pipeline_class" not in meta
    assert spectrum.wavelength.size == 4101 + 3692
    assert spectrum.wavelength[0] == pytest.approx(10**3.6896598, rel=1e-6)
    assert spectrum.wavelength[-1] == pytest.approx(6850.6, abs=0.1)
    gap = (spectrum.wavelength > 5400) & (spectrum.wavelength < 6250)
    assert not gap.any()
    with fits.open(data_dir / DR7_MRS) as hdus:
        n_masked = int(np.sum(hdus["COADD_B"].data["ANDMASK"] != 0))
        n_zero_ivar = int(np.sum(hdus["COADD_B"].data["IVAR"] == 0))
    assert n_masked > 0
    blue = spectrum.wavelength < 5500
    assert np.sum(spectrum.ivar[blue] == 0) >= n_masked
    assert np.sum(spectrum.ivar[blue] == 0) >= n_zero_ivar


def _as_dr8_table(source: Path, target: Path, keep_coeff: bool) -> None:
    """Rewrite a real DR7 image file into the DR8+ LRS binary-table layout.

    Structure as read by public code: LiangJunC/PyLASP uly_read_lms/uly_spect_read_lms.py
    (``f[1].data["FLUX"][0]``, ``["IVAR"][0]``, ``["ANDMASK"][0]``), YunyuG/Cmost
    src/cmost/io.py (DR >= 8: ``hdu[1].data[0]`` = FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK)
    and MultimodalUniverse scripts/lamost/build_parent_sample.py (FLUX/WAVELENGTH (1, n)).
    """
    with fits.open(source) as hdus:
        header = hdus[0].header.copy()
        rows = hdus[0].data
    n_pix = rows.shape[1]
    for key in ("NAXIS1", "NAXIS2", "EXTNAME"):
        header.remove(key, ignore_missing=True)
    if not keep_coeff:
        for key in ("COEFF0", "COEFF1", "CRVAL1", "CD1_1"):
            header.remove(key)
    columns = [
        fits.Column(name=name, format=f"{n_pix}E", array=rows[index][np.newaxis, :])
        for index, name in enumerate(["FLUX", "IVAR", "WAVELENGTH", "ANDMASK", "ORMASK"])
    ]
    table = fits.BinTableHDU.from_columns(columns, name="COADD")
    fits.HDUList([fits.PrimaryHDU(header=header), table]).writeto(target)


@pytest.mark.parametrize("keep_coeff", [True, False])
def test_dr8_table_layout_reads_like_the_image_it_came_from(
    data_dir: Path, tmp_path: Path, keep_coeff: bool
) -> None:
    target = tmp_path / "spec-dr8-layout.fits"
    _as_dr8_table(data_dir / DR7_LRS, target, keep_coeff)
    image = read_spectrum(data_dir / DR7_LRS)
    table = read_spectrum(target)
    assert table.meta["format"] == "lamost_lrs_table"
    assert table.meta["pipeline_subclass"] == "G3"
    np.testing.assert_array_equal(table.flux, image.flux)
    np.testing.assert_array_equal(table.ivar, image.ivar)
    if keep_coeff:
        np.testing.assert_array_equal(table.wavelength, image.wavelength)
        assert table.meta["wavelength_source"] == "COEFF0/COEFF1"
    else:
        np.testing.assert_allclose(table.wavelength, image.wavelength, atol=0.01)
        assert table.meta["wavelength_source"] == "WAVELENGTH column"


def test_missing_coeff_keywords_is_no_spectral_axis(data_dir: Path, tmp_path: Path) -> None:
    with fits.open(data_dir / DR1_M0) as hdus:
        del hdus[0].header["COEFF0"]
        hdus.writeto(tmp_path / "no-coeff.fits")
    with pytest.raises(SpectrumReadError, match="no-coeff.fits: no spectral axis.*COEFF0"):
        read_spectrum(tmp_path / "no-coeff.fits")


@pytest.mark.parametrize("coeff1", [1e300, -1e-4, 0.0])
def test_absurd_coeff_keywords_are_no_spectral_axis(
    data_dir: Path, tmp_path: Path, coeff1: float
) -> None:
    """Coefficients that overflow or do not increase are named, without numpy warnings."""
    with fits.open(data_dir / DR1_M0) as hdus:
        hdus[0].header["COEFF1"] = coeff1
        hdus.writeto(tmp_path / "bad-coeff.fits")
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        with pytest.raises(SpectrumReadError, match="bad-coeff.fits: no spectral axis: COEFF0"):
            read_spectrum(tmp_path / "bad-coeff.fits")


def test_lamost_header_with_three_rows_is_wrong_layout(data_dir: Path, tmp_path: Path) -> None:
    with fits.open(data_dir / DR1_M0) as hdus:
        fits.PrimaryHDU(hdus[0].data[:3], hdus[0].header).writeto(tmp_path / "three.fits")
    with pytest.raises(SpectrumReadError, match=r"three.fits: .*shape 3 x 3904; expected 5 rows"):
        read_spectrum(tmp_path / "three.fits")
