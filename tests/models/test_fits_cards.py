"""The astropy-free LAMOST paths (LRS image, MRS tables) must agree with astropy, or step
aside.

Every real LAMOST file is read both ways and compared exactly; generated cards are parsed
by both parsers; unusual headers must make the fast paths decline (None), never guess.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from hypothesis import given, settings
from hypothesis import strategies as st

from models.io import lamost, read_spectrum
from models.io.base import SpectrumReadError
from models.io.fits_cards import LAYOUT_KEYS, parse_value, scan_extensions, scan_primary

KEY = "TESTKEY"


def _lamost_files(data_dir: Path) -> list[Path]:
    files = [p for p in sorted((data_dir / "lamost").rglob("*")) if ".fits" in p.name]
    assert len(files) > 100
    return files


def _astropy_only(monkeypatch) -> None:
    monkeypatch.setattr(lamost, "_read_lrs_image_fast", lambda path, content: None)
    monkeypatch.setattr(lamost, "_read_mrs_fast", lambda path, content: None)


def _same_spectrum(a, b) -> None:
    for name in ("wavelength", "flux", "ivar"):
        left, right = getattr(a, name), getattr(b, name)
        assert left.dtype == right.dtype
        np.testing.assert_array_equal(left, right)
    assert a.meta == b.meta


def test_every_real_lamost_file_reads_the_same_without_astropy(data_dir, monkeypatch):
    files = _lamost_files(data_dir)
    fast = {}
    taken = 0
    for path in files:
        content = path.read_bytes()
        if path.name.endswith(".gz"):
            content = gzip.decompress(content)
        taken += lamost._read_lrs_image_fast(path, content) is not None
        taken += lamost._read_mrs_fast(path, content) is not None
        fast[path] = read_spectrum(path)
    medium = [path for path in files if path.name.startswith("med-")]
    assert medium and taken == len(files)  # every file takes a fast path
    _astropy_only(monkeypatch)
    for path in files:
        _same_spectrum(fast[path], read_spectrum(path))


def test_scan_reads_the_same_values_as_astropy(data_dir):
    path = _lamost_files(data_dir)[0]
    content = path.read_bytes()
    header = fits.getheader(path)
    keys = [card.keyword for card in header.cards if card.keyword and card.keyword != "COMMENT"]
    primary = scan_primary(content, keys)
    assert primary is not None
    assert len(primary.values) > 50
    for key, value in primary.values.items():
        assert value == header[key], key
        assert type(value) is type(header[key]), key
    assert primary.data_offset == header.tostring().__len__()


def _rewritten(path: Path, edit, dtype=None) -> bytes:
    with fits.open(path) as hdus:
        header = hdus[0].header.copy()
        data = hdus[0].data.copy()
    edit(header)
    buffer = io.BytesIO()
    fits.PrimaryHDU(data=data if dtype is None else data.astype(dtype), header=header).writeto(
        buffer
    )
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("edit", "dtype", "reason"),
    [
        (lambda h: None, np.int16, "integer data"),
        (lambda h: h.set("TELESCOP", "SDSS 2.5-M"), None, "another telescope"),
        (lambda h: h.set("COEFF0", "a" * 90), None, "long string (CONTINUE cards)"),
        (lambda h: h.set("COEFF0", complex(1, 2)), None, "complex value"),
    ],
)
def test_unusual_headers_go_through_astropy(data_dir, edit, dtype, reason):
    path = _lamost_files(data_dir)[0]
    content = _rewritten(path, edit, dtype)
    assert lamost._read_lrs_image_fast(path, content) is None, reason
    assert lamost._read_lrs_image_fast(path, _rewritten(path, lambda h: None)) is not None


def _with_card(content: bytes, image: str) -> bytes:
    """``content`` with one more header card, written where END was (END moves down)."""
    end = next(i for i in range(0, len(content), 80) if content[i : i + 80] == b"END".ljust(80))
    assert content[end + 80 : end + 160] == b" " * 80  # room left in the last block
    return content[:end] + image.ljust(80).encode() + b"END".ljust(80) + content[end + 160 :]


@pytest.mark.parametrize(
    "image",
    ["BZERO   =                 10.0", "bscale  =                  2.0", "CONTINUE  'x'"],
)
def test_added_cards_that_change_the_meaning_decline(data_dir, image):
    path = _lamost_files(data_dir)[0]
    content = path.read_bytes()
    assert lamost._read_lrs_image_fast(path, _with_card(content, "HISTORY ok")) is not None
    assert lamost._read_lrs_image_fast(path, _with_card(content, image)) is None


def _truncated_both_ways(broken: Path, monkeypatch) -> None:
    """The fast path declines a cut file, and the error is astropy's, word for word."""
    with pytest.raises(SpectrumReadError, match="truncated") as fast:
        read_spectrum(broken)
    _astropy_only(monkeypatch)
    with pytest.raises(SpectrumReadError) as slow:
        read_spectrum(broken)
    assert str(fast.value) == str(slow.value)


def test_truncated_file_gets_astropys_message(data_dir, derive_file, monkeypatch):
    source = _lamost_files(data_dir)[0]
    broken = derive_file(source, lambda raw: raw[: len(raw) - 5000], name="cut.fits")
    _truncated_both_ways(broken, monkeypatch)


def _medium(data_dir: Path) -> Path:
    return next(p for p in _lamost_files(data_dir) if p.name.startswith("med-"))


def test_walk_over_extensions_finds_astropys_hdus(data_dir):
    path = _medium(data_dir)
    content = path.read_bytes()
    primary = scan_primary(content, LAYOUT_KEYS)
    walked = list(scan_extensions(content, primary, ["TFIELDS"]))
    with fits.open(path) as hdus:
        assert len(walked) == len(hdus) - 1 > 10
        for hdu, ours in zip(hdus[1:], walked, strict=True):
            assert ours.values["EXTNAME"] == hdu.name
            assert ours.values["TFIELDS"] == hdu.header["TFIELDS"]
            assert ours.data_offset == hdu.fileinfo()["datLoc"]
            assert ours.data_size == hdu.header["NAXIS1"] * hdu.header["NAXIS2"]
    # bytes that are not a header after the last HDU's data: unusual
    assert list(scan_extensions(content + b"x" * 2880, primary, []))[-1] is None


def _medium_rewritten(path: Path, edit) -> bytes:
    with fits.open(path) as hdus:
        copies = fits.HDUList([hdu.copy() for hdu in hdus])
    edit(copies)
    buffer = io.BytesIO()
    copies.writeto(buffer)
    return buffer.getvalue()


def _vector_flux(hdus) -> None:
    table = hdus[1]
    columns = [
        fits.Column(name=c.name, format="2E", array=np.repeat(table.data[c.name][:, None], 2, 1))
        if c.name == "FLUX"
        else fits.Column(name=c.name, format=c.format, array=table.data[c.name])
        for c in table.columns
    ]
    hdus[1] = fits.BinTableHDU.from_columns(columns, header=table.header)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda hdus: hdus[1].header.set("TZERO4", 32768), "scaled (unsigned) column"),
        (_vector_flux, "array column"),
        (lambda hdus: hdus.insert(2, hdus[1].copy()), "COADD_B twice before COADD_R"),
        (lambda hdus: hdus[0].header.set("TELESCOP", "SDSS 2.5-M"), "another telescope"),
        (lambda hdus: hdus[2].header.set("SNR", complex(1, 2)), "a value it cannot read"),
    ],
)
def test_unusual_medium_resolution_files_go_through_astropy(data_dir, edit, reason):
    path = _medium(data_dir)
    assert lamost._read_mrs_fast(path, _medium_rewritten(path, lambda hdus: None)) is not None
    assert lamost._read_mrs_fast(path, _medium_rewritten(path, edit)) is None, reason


def test_medium_resolution_file_cut_in_its_coadds_gets_astropys_message(
    data_dir, derive_file, monkeypatch
):
    source = _medium(data_dir)
    with fits.open(source) as hdus:
        red_end = hdus[2].fileinfo()["datLoc"] + hdus[2].header["NAXIS2"] * 16
    broken = derive_file(source, lambda raw: raw[: red_end - 1000], name="cut.fits")
    assert lamost._read_mrs_fast(broken, broken.read_bytes()) is None
    _truncated_both_ways(broken, monkeypatch)


@pytest.mark.parametrize(
    ("card", "value", "reason"),
    [
        (b"NAXIS1  =", b"-1", "NAXIS1 is negative"),
        (b"TFIELDS =", b"9999999999", "TFIELDS = 9999999999 (FITS allows at most 999 columns)"),
    ],
)
def test_impossible_table_sizes_are_named_not_looped_over(data_dir, card, value, reason):
    """Each of these kept astropy busy for minutes (found by fuzzing a ``med-*`` file)."""
    path = _medium(data_dir)
    content = bytearray(path.read_bytes())
    at = bytes(content).find(card, 2880)  # in COADD_B's header
    content[at + 10 : at + 30] = value.rjust(20)
    with pytest.raises(SpectrumReadError, match=re.escape(reason)):
        read_spectrum(path, bytes(content))


def test_medium_resolution_file_cut_after_its_coadds_is_read(data_dir, derive_file):
    """As for the LRS image, what follows the spectrum (here the single exposures) is not
    looked at: the coadds are read, and equal the intact file's."""
    source = _medium(data_dir)
    with fits.open(source) as hdus:
        exposures = hdus[3].fileinfo()["datLoc"]
    broken = derive_file(source, lambda raw: raw[: exposures + 100], name="cut.fits")
    _same_spectrum(read_spectrum(broken), read_spectrum(source))


def test_keywords_are_compared_byte_for_byte(data_dir):
    """The per-layout cache keys on the raw keyword column: a keyword padded with NUL
    bytes is another keyword (as before the cache), and the next file of the same layout
    gets its own values."""
    first, second = _lamost_files(data_dir)[:2]
    content = bytearray(first.read_bytes())
    at = bytes(content).find(b"COEFF0  =")
    assert at % 80 == 0
    intact = scan_primary(bytes(content), lamost._FAST_KEYS)
    content[at + 6 : at + 8] = b"\0\0"
    padded = scan_primary(bytes(content), lamost._FAST_KEYS)
    assert "COEFF0" in intact.values and "COEFF0" not in padded.values
    other = scan_primary(second.read_bytes(), lamost._FAST_KEYS)
    assert other.values["RA"] == fits.getheader(second)["RA"] != intact.values["RA"]


def test_header_without_end_declines():
    card = fits.Card("SIMPLE", True).image
    assert scan_primary(card.encode() + b" " * 80 * 35, ["SIMPLE"]) is None
    assert scan_primary(b"not fits at all", ["SIMPLE"]) is None


_text = st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=60)
_values = st.one_of(
    _text,
    st.booleans(),
    st.integers(min_value=-(10**15), max_value=10**15),
    st.floats(allow_nan=False, allow_infinity=False, width=64),
)


@settings(max_examples=400, deadline=None)
@given(value=_values, comment=st.one_of(st.just(""), _text))
def test_generated_cards_parse_like_astropy(value, comment):
    card = fits.Card(KEY, value, comment)
    image = card.image
    if len(image) > 80:  # long strings become CONTINUE cards; scan_primary declines those
        return
    ours = parse_value(image[10:])
    theirs = fits.Card.fromstring(image).value
    if isinstance(value, str) and "'" in value + comment:
        assert ours is None  # quotes in string cards are left to astropy
        return
    assert ours is not None, image
    assert ours == theirs, image
    assert type(ours) is type(theirs), image


@pytest.mark.parametrize("field", ["", "   ", "(1.0, 2.0)", "1.0e5", "nan", "'unclosed", "T T"])
def test_values_it_does_not_vouch_for_are_none(field):
    assert parse_value(field) is None
