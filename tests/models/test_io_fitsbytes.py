"""The byte-level FITS parser agrees with astropy on the real files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.io import fitsbytes

FILES = [
    "lamost/dr1_learninglamost/spec-55862-B6212_sp06-005.fits",
    "lamost/dr6_dr7_laspec/med-58408-TD230151N343645T01_sp01-015.fits",
    "sdss/spec-4055-55359-0027.fits",
    "sdss/spSpec-51630-0266-637.fit",
    "ondrejov/fits_raw_ccd700/oe270005.fits",
    "ondrejov/fits_normalized_halpha/ub240016.fits",
]


@pytest.mark.parametrize("name", FILES)
def test_headers_and_layout_match_astropy(data_dir: Path, name: str) -> None:
    content = (data_dir / name).read_bytes()
    hdus = fitsbytes.scan_hdus(content)
    with fits.open(data_dir / name) as reference:
        assert len(hdus) == len(reference)
        for ours, theirs in zip(hdus, reference, strict=True):
            if ours.kind == "image":
                assert ours.shape == (theirs.data.shape if theirs.data is not None else ())
            else:
                assert ours.header["NAXIS2"] == len(theirs.data)
            for key, value in theirs.header.items():
                if key in ("COMMENT", "HISTORY", "") or key not in ours.header:
                    continue
                if isinstance(value, float):
                    assert ours.header[key] == pytest.approx(value), key
                else:
                    assert ours.header[key] == value, key
            missing = {key for key in theirs.header if key not in ("COMMENT", "HISTORY", "")}
            assert missing <= set(ours.header)


def test_primary_image_matches_astropy(data_dir: Path) -> None:
    name = FILES[3]
    hdu = fitsbytes.scan_hdus((data_dir / name).read_bytes())[0]
    values = fitsbytes.image_data((data_dir / name).read_bytes(), hdu)
    np.testing.assert_array_equal(values, fits.getdata(data_dir / name).astype(np.float64))


@pytest.mark.parametrize(
    ("name", "extension", "columns"),
    [
        (FILES[1], "COADD_B", ["FLUX", "IVAR", "LOGLAM", "ANDMASK"]),
        (FILES[2], "COADD", ["flux", "loglam", "and_mask"]),
        (FILES[2], "SPALL", ["CLASS", "SUBCLASS", "Z", "SN_MEDIAN", "PLUG_RA", "RUN2D"]),
        (FILES[5], 1, ["spectral", "flux"]),
    ],
)
def test_table_columns_match_astropy(data_dir: Path, name, extension, columns) -> None:
    content = (data_dir / name).read_bytes()
    hdus = fitsbytes.scan_hdus(content)
    hdu = (
        hdus[extension]
        if isinstance(extension, int)
        else next(h for h in hdus if h.name == extension)
    )
    reference = fits.getdata(data_dir / name, extension)
    for column in columns:
        ours = fitsbytes.table_column(content, hdu, column)
        theirs = np.asarray(reference[column])
        if theirs.dtype.kind in "SU":
            assert list(ours) == [str(value).strip() for value in theirs]
        else:
            np.testing.assert_array_equal(ours, theirs)


def test_comments_and_quoted_strings() -> None:
    card = "'O''Brien / not a comment'  / the comment"
    assert fitsbytes.parse_value(card) == ("O'Brien / not a comment", "the comment")
    assert fitsbytes.parse_value("  1.5D+02 / x") == (150.0, "x")
    assert fitsbytes.parse_value("                   T") == (True, "")
