"""Registry: content-based dispatch, identify_kind, and corrupt inputs derived from real files."""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from PIL import Image

from models.io import SpectrumReadError, identify_kind, read_spectrum

LAMOST = "lamost/dr1_learninglamost/spec-55862-B6212_sp06-005.fits"
LAMOST_GZ = "lamost/dr6_dr7_laspec/spec-57287-KP193637N444141V03_sp10-161.fits.gz"
SDSS = "sdss/spec-0266-51602-0001.fits"


def _picture(data_dir: Path, image_format: str) -> bytes:
    """A small 8-bit picture made from a real LAMOST flux array."""
    flux = fits.getdata(data_dir / LAMOST)[0, :3600].reshape(60, 60)
    scaled = np.clip(255 * (flux - flux.min()) / np.ptp(flux), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(scaled).convert("RGB").save(buffer, format=image_format)
    return buffer.getvalue()


def test_reader_is_chosen_by_content_not_name(data_dir: Path, derive_file) -> None:
    renamed_lamost = derive_file(data_dir / LAMOST, bytes, name="looks-like-sdss.csv")
    renamed_text = derive_file(data_dir / "jhc_atlas/spectra/A0000002.SP", bytes, name="x.fits")
    assert read_spectrum(renamed_lamost).meta["source"] == "lamost"
    assert read_spectrum(renamed_text).meta["source"] == "jhc"
    assert read_spectrum(str(data_dir / SDSS)).meta["source"] == "sdss"  # str paths work


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        (LAMOST, "spectrum"),
        (LAMOST_GZ, "spectrum"),
        (SDSS, "spectrum"),
        ("ondrejov/fits_normalized_halpha/ub240016.fits", "spectrum"),
        ("pickles_1998/sed/o5v.sed.gz", "spectrum"),
        ("jhc_mk_dwarfs/HD10032.txt", "spectrum"),
        ("jhc_atlas/PROVENANCE.txt", "unknown"),
    ],
)
def test_identify_kind_on_real_files(data_dir: Path, name: str, kind: str) -> None:
    assert identify_kind(data_dir / name) == kind


def test_identify_kind_images(data_dir: Path, write_file, tmp_path: Path) -> None:
    assert identify_kind(write_file("g.png", _picture(data_dir, "PNG"))) == "image"
    assert identify_kind(write_file("g.jpg", _picture(data_dir, "JPEG"))) == "image"
    flux = fits.getdata(data_dir / LAMOST)[0, :3600].reshape(60, 60)
    fits.PrimaryHDU(flux).writeto(tmp_path / "image2d.fits")
    fits.PrimaryHDU(np.stack([flux] * 3)).writeto(tmp_path / "cube.fits")
    strip = fits.PrimaryHDU(flux[:8])  # 8 x 60: too thin to be a picture
    strip.writeto(tmp_path / "strip.fits")
    assert identify_kind(tmp_path / "image2d.fits") == "image"
    assert identify_kind(tmp_path / "cube.fits") == "image"
    assert identify_kind(tmp_path / "strip.fits") == "unknown"


def test_identify_kind_of_missing_file_raises(tmp_path: Path) -> None:
    with pytest.raises(SpectrumReadError, match="nothing.fits: file not found"):
        identify_kind(tmp_path / "nothing.fits")


TRUNCATED = "truncated FITS file (expected 92160 bytes, got 20000)"
CORRUPTIONS = {
    "not FITS": (lambda raw: b"\x00\x01" * 40 + raw[80:], "not a FITS file or a text spectrum"),
    "truncated FITS": (lambda raw: raw[:20000], TRUNCATED),
    "truncated header": (lambda raw: raw[:4000], "no END card"),
    "empty": (lambda raw: b"", "empty file (0 bytes)"),
    # astropy makes one list entry per axis before any check: this took minutes
    "absurd NAXIS": (
        lambda raw: raw.replace(
            b"NAXIS   =                    2", b"NAXIS   =             99999999", 1
        ),
        "NAXIS = 99999999 (FITS allows at most 999 axes)",
    ),
    # a negative size sent astropy's walk over the HDUs into a loop of minutes
    "negative NAXIS1": (
        lambda raw: re.sub(rb"NAXIS1  = +[0-9]+", b"NAXIS1  = " + b"-1".rjust(20), raw, count=1),
        "NAXIS1 is negative (sizes must be 0 or more)",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_corrupt_lamost_bytes_raise_with_file_name(data_dir: Path, derive_file, case: str) -> None:
    edit, reason = CORRUPTIONS[case]
    path = derive_file(data_dir / LAMOST, edit, name=f"broken-{case.replace(' ', '_')}.fits")
    with pytest.raises(SpectrumReadError) as error:
        read_spectrum(path)
    assert str(error.value).startswith(f"{path.name}: ")
    assert reason in str(error.value)
    assert error.value.path == str(path)


def test_truncated_gzip(data_dir: Path, derive_file) -> None:
    path = derive_file(data_dir / LAMOST_GZ, lambda raw: raw[: len(raw) // 2])
    with pytest.raises(SpectrumReadError, match=r"sp10-161.fits.gz: corrupt or truncated gzip"):
        read_spectrum(path)


def test_nan_only_flux(data_dir: Path, tmp_path: Path) -> None:
    with fits.open(data_dir / LAMOST) as hdus:
        hdus[0].data[0] = np.nan
        hdus.writeto(tmp_path / "nan-flux.fits")
    with pytest.raises(SpectrumReadError, match="nan-flux.fits: no usable pixels"):
        read_spectrum(tmp_path / "nan-flux.fits")


@pytest.mark.parametrize("image_format", ["PNG", "JPEG"])
def test_picture_passed_as_spectrum(data_dir: Path, write_file, image_format: str) -> None:
    path = write_file(f"galaxy.{image_format.lower()}", _picture(data_dir, image_format))
    with pytest.raises(SpectrumReadError, match=f"galaxy.*: this is a {image_format} image"):
        read_spectrum(path)


def test_2d_fits_image_passed_as_spectrum(data_dir: Path, tmp_path: Path) -> None:
    flux = fits.getdata(data_dir / LAMOST)[0, :3600].reshape(60, 60)
    fits.PrimaryHDU(flux).writeto(tmp_path / "cutout.fits")
    with pytest.raises(SpectrumReadError, match="cutout.fits: FITS image of shape 60 x 60"):
        read_spectrum(tmp_path / "cutout.fits")


def test_fits_table_of_unknown_origin(data_dir: Path, tmp_path: Path) -> None:
    spectrum = read_spectrum(data_dir / LAMOST)
    columns = [
        fits.Column("WAVE", "D", array=spectrum.wavelength),
        fits.Column("F", "D", array=spectrum.flux),
    ]
    fits.BinTableHDU.from_columns(columns).writeto(tmp_path / "table.fits")
    with pytest.raises(
        SpectrumReadError, match="table.fits: FITS file with no recognised spectrum layout"
    ):
        read_spectrum(tmp_path / "table.fits")
    assert identify_kind(tmp_path / "table.fits") == "unknown"


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SpectrumReadError, match="is a directory"):
        read_spectrum(tmp_path)
