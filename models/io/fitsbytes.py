"""Minimal FITS structure parser over bytes: headers, HDU layout and primary images.

Usage::

    from models.io.fitsbytes import is_fits, scan_hdus, image_data
    hdus = scan_hdus(content)                 # raises FitsLayoutError when truncated
    flux_rows = image_data(content, hdus[0])  # float64 copy of the primary image
    loglam = table_column(content, hdus[1], "loglam")

Why not astropy: reading a LAMOST 5 x N file through ``astropy.io.fits`` costs ~0.8 ms,
most of it header parsing; this parser needs ~0.3 ms for the whole read, lets identify()
look at headers without opening the file twice, and keeps astropy's import time out of the
serving path. It covers what the spectrum readers need: headers, HDU walking with
truncation checks, images (BITPIX 8/16/32/64/-32/-64, BSCALE/BZERO) and fixed-width
binary-table columns (L/B/I/J/K/A/E/D, TSCAL/TZERO). tests/models/test_io_fitsbytes.py
checks it against astropy on the real files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 2880
CARD = 80
FITS_MAGIC = b"SIMPLE  ="
_BITPIX_DTYPES = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}
_SKIPPED_KEYWORDS = {"", "COMMENT", "HISTORY", "CONTINUE", "HIERARCH"}


class FitsLayoutError(ValueError):
    """The bytes are not a complete, well-formed FITS file (the reason is the message)."""


@dataclass(frozen=True)
class Hdu:
    """One header-data unit: its parsed header and where its data lie in the file."""

    index: int
    header: dict[str, Any]
    comments: dict[str, str]
    data_offset: int
    data_bytes: int

    @property
    def name(self) -> str:
        """EXTNAME (upper case), or PRIMARY for HDU 0 without one."""
        default = "PRIMARY" if self.index == 0 else ""
        return str(self.header.get("EXTNAME", default)).strip().upper()

    @property
    def kind(self) -> str:
        """'image' (primary or IMAGE extension), 'bintable', 'table' or the XTENSION value."""
        if self.index == 0:
            return "image"
        return str(self.header.get("XTENSION", "")).strip().lower()

    @property
    def shape(self) -> tuple[int, ...]:
        """Data shape in numpy order (slowest axis first); () when there is no data."""
        naxis = header_int(self.header, "NAXIS", 0)
        return tuple(header_int(self.header, f"NAXIS{i}", 0) for i in range(naxis, 0, -1))


def header_int(header: dict[str, Any], key: str, default: int) -> int:
    """A non-negative integer structural keyword; FitsLayoutError when it is not one."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or (value < 0 and key != "BITPIX"):
        raise FitsLayoutError(f"bad {key} value {value!r} in the header")
    return value


def header_number(header: dict[str, Any], key: str, default: float) -> float:
    """A numeric keyword (BSCALE, TZERO...); FitsLayoutError when it is not a number."""
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise FitsLayoutError(f"bad {key} value {value!r} in the header")
    return float(value)


def is_fits(head: bytes) -> bool:
    """True when the bytes start like a FITS primary header."""
    return head.startswith(FITS_MAGIC)


def parse_value(text: str) -> tuple[Any, str]:
    """Value and comment of a FITS card's value field (bytes 10-80).

    The value is a str, bool, int or float, None when the field is blank, or the raw text
    when it is none of these.
    """
    text = text.strip()
    if text.startswith("'"):
        end = 1
        while True:
            end = text.find("'", end)
            if end < 0:
                return text[1:].rstrip(), ""
            if text[end + 1 : end + 2] == "'":
                end += 2
                continue
            comment = text[end + 1 :].partition("/")[2].strip()
            return text[1:end].replace("''", "'").rstrip(), comment
    raw, _, comment = text.partition("/")
    raw, comment = raw.strip(), comment.strip()
    if not raw:
        return None, comment  # undefined value, as astropy reports it
    if raw in ("T", "F"):
        return raw == "T", comment
    try:
        return int(raw), comment
    except ValueError:
        pass
    try:
        return float(raw.replace("D", "E")), comment
    except ValueError:
        return raw, comment


def parse_header(buf: bytes, offset: int = 0) -> tuple[dict[str, Any], dict[str, str], int]:
    """Parse one header starting at ``offset``.

    Returns:
        keyword -> value, keyword -> comment (commentary cards skipped; a later duplicate
        wins) and the offset of the first byte after the header's last block.

    Raises:
        FitsLayoutError: no END card before the bytes run out, or a non-ASCII header.
    """
    header: dict[str, Any] = {}
    comments: dict[str, str] = {}
    position = offset
    while True:
        card_bytes = buf[position : position + CARD]
        if len(card_bytes) < CARD:
            raise FitsLayoutError(f"header at byte {offset} has no END card (file truncated?)")
        try:
            card = card_bytes.decode("ascii")
        except UnicodeDecodeError as error:
            raise FitsLayoutError(f"non-ASCII bytes in the header at byte {position}") from error
        position += CARD
        keyword = card[:8].rstrip()
        if keyword == "END":
            break
        if keyword in _SKIPPED_KEYWORDS or card[8:10] != "= ":
            continue
        header[keyword], comments[keyword] = parse_value(card[10:])
    header_end = offset + -(-(position - offset) // BLOCK) * BLOCK
    return header, comments, header_end


def first_header_value(head: bytes, keyword: str) -> Any:
    """Value of ``keyword`` in the primary header, scanning cards only up to END; else None.

    Cheaper than :func:`parse_header` for identify(): only the matching card is parsed.
    """
    target = keyword.encode("ascii").ljust(8)
    for position in range(0, len(head) - CARD + 1, CARD):
        name = head[position : position + 8]
        if name == target and head[position + 8 : position + 10] == b"= ":
            card = head[position + 10 : position + CARD].decode("ascii", errors="replace")
            return parse_value(card)[0]
        if name == b"END     ":
            return None
    return None


def data_size(header: dict[str, Any]) -> int:
    """Bytes of data that follow a header (before padding), from BITPIX/NAXISn/PCOUNT/GCOUNT."""
    naxis = header_int(header, "NAXIS", 0)
    if naxis == 0:
        return 0
    bitpix = header_int(header, "BITPIX", 8)
    n_values = 1
    for axis in range(1, naxis + 1):
        n_values *= header_int(header, f"NAXIS{axis}", 0)
    pcount = header_int(header, "PCOUNT", 0)
    gcount = header_int(header, "GCOUNT", 1)
    return abs(bitpix) // 8 * gcount * (pcount + n_values)


def scan_hdus(buf: bytes, *, strict: bool = True, max_hdus: int = 1000) -> list[Hdu]:
    """Walk the HDUs of a FITS file held in ``buf``.

    Args:
        buf: the whole file (``strict=True``) or just its first bytes (``strict=False``).
        strict: raise FitsLayoutError when a header or data block is cut off; otherwise stop
            quietly at the first HDU that does not fit (for identify() on a file's head).
        max_hdus: stop after this many HDUs.
    """
    if not is_fits(buf):
        raise FitsLayoutError("not a FITS file (no SIMPLE card)")
    hdus: list[Hdu] = []
    offset = 0
    while offset < len(buf) and len(hdus) < max_hdus:
        try:
            header, comments, data_offset = parse_header(buf, offset)
        except FitsLayoutError:
            if strict or not hdus:
                raise
            break
        n_bytes = data_size(header)
        hdus.append(Hdu(len(hdus), header, comments, data_offset, n_bytes))
        if strict and data_offset + n_bytes > len(buf):
            expected = data_offset + -(-n_bytes // BLOCK) * BLOCK
            raise FitsLayoutError(
                f"truncated FITS file (expected {expected} bytes, got {len(buf)})"
            )
        offset = data_offset + -(-n_bytes // BLOCK) * BLOCK
        if offset < len(buf) and not buf[offset : offset + 8].startswith(b"XTENSION"):
            break  # trailing padding or junk after the last HDU
    return hdus


def image_data(buf: bytes, hdu: Hdu) -> np.ndarray:
    """The image array of an HDU as float64 (BSCALE/BZERO applied), shape ``hdu.shape``."""
    bitpix = header_int(hdu.header, "BITPIX", 0)
    if bitpix not in _BITPIX_DTYPES:
        raise FitsLayoutError(f"unsupported BITPIX {bitpix}")
    if hdu.data_offset + hdu.data_bytes > len(buf):
        raise FitsLayoutError(
            f"truncated FITS file (expected {hdu.data_offset + hdu.data_bytes} bytes, "
            f"got {len(buf)})"
        )
    n_values = int(np.prod(hdu.shape))
    values = np.frombuffer(
        buf, dtype=_BITPIX_DTYPES[bitpix], count=n_values, offset=hdu.data_offset
    )
    values = values.reshape(hdu.shape).astype(np.float64)
    scale = header_number(hdu.header, "BSCALE", 1.0)
    zero = header_number(hdu.header, "BZERO", 0.0)
    if scale != 1.0 or zero != 0.0:
        values = values * scale + zero
    return values


_TFORM = re.compile(r"^\s*(\d*)([LXBIJKAEDCMPQ])")
_TFORM_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}
_TFORM_DTYPES = {"L": "S1", "B": ">u1", "I": ">i2", "J": ">i4", "K": ">i8", "E": ">f4", "D": ">f8"}


def column_names(hdu: Hdu) -> list[str]:
    """The TTYPEn names of a table HDU, in column order (stripped, case kept)."""
    n_fields = header_int(hdu.header, "TFIELDS", 0)
    return [str(hdu.header.get(f"TTYPE{i}", "")).strip() for i in range(1, n_fields + 1)]


def _field_width(tform: str) -> tuple[int, str]:
    """Repeat count and type letter of a TFORM such as '3909E' or '19A'."""
    match = _TFORM.match(tform)
    if match is None:
        raise FitsLayoutError(f"unsupported binary-table format {tform!r}")
    repeat = int(match.group(1) or 1)
    letter = match.group(2)
    return repeat, letter


def table_column(buf: bytes, hdu: Hdu, name: str) -> np.ndarray:
    """Decode one column of a BINTABLE HDU (case-insensitive name).

    Returns an array of shape (n_rows,) or (n_rows, repeat): float64 for scaled or float
    columns, the stored integer type otherwise, str for character columns.

    Raises:
        KeyError: no such column.
        FitsLayoutError: variable-length, bit or complex columns, or truncated data.
    """
    if hdu.kind != "bintable":
        raise FitsLayoutError(f"HDU {hdu.index} is not a binary table")
    names = [column.upper() for column in column_names(hdu)]
    if name.upper() not in names:
        raise KeyError(name)
    index = names.index(name.upper()) + 1
    offset = 0
    for field in range(1, index):
        repeat, letter = _field_width(str(hdu.header.get(f"TFORM{field}", "")))
        offset += _bytes_of(repeat, letter)
    repeat, letter = _field_width(str(hdu.header.get(f"TFORM{index}", "")))
    if letter not in _TFORM_DTYPES and letter != "A":
        raise FitsLayoutError(f"column {name!r} has unsupported format {letter!r}")
    base = f"S{repeat}" if letter == "A" else _TFORM_DTYPES[letter]
    field_dtype = np.dtype(base) if letter == "A" or repeat == 1 else np.dtype((base, repeat))
    n_rows = header_int(hdu.header, "NAXIS2", 0)
    row_bytes = header_int(hdu.header, "NAXIS1", 0)
    if offset + field_dtype.itemsize > row_bytes:
        raise FitsLayoutError(f"column {name!r} does not fit in a {row_bytes}-byte table row")
    if hdu.data_offset + n_rows * row_bytes > len(buf):
        raise FitsLayoutError("truncated FITS file (table data cut off)")
    record = np.dtype({"names": ["v"], "formats": [field_dtype], "offsets": [offset],
                       "itemsize": row_bytes})  # fmt: skip
    values = np.frombuffer(buf, dtype=record, count=n_rows, offset=hdu.data_offset)["v"]
    if letter == "A":
        return np.char.strip(np.char.decode(values, "ascii", errors="replace"))
    scale = header_number(hdu.header, f"TSCAL{index}", 1.0)
    zero = header_number(hdu.header, f"TZERO{index}", 0.0)
    if letter in "ED" or scale != 1.0 or zero != 0.0:
        return values.astype(np.float64) * scale + zero
    return values.astype(values.dtype.newbyteorder("="))


def _bytes_of(repeat: int, letter: str) -> int:
    """Bytes taken by a field of ``repeat`` elements of type ``letter``."""
    if letter == "X":
        return -(-repeat // 8)
    if letter in "PQ":
        return 8 if letter == "P" else 16
    return repeat * _TFORM_BYTES[letter]
