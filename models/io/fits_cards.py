"""Fast reading of plain cards of FITS headers (the primary's, and the extensions' in a
walk over the file), checked against astropy.

Usage::

    from models.io.fits_cards import scan_primary
    primary = scan_primary(content, keys={"NAXIS1", "COEFF0"})
    if primary is None:            # anything unusual: use astropy instead
        ...
    primary.values["COEFF0"], primary.data_offset
    extensions = scan_extensions(content, primary, keys={"EXTNAME", "TTYPE1"})

Why: astropy parses every card of a header into a Card object and re-reads its
configuration on every value access, ~1 ms for a 150-card LAMOST header, which is more than
the rest of the classify path together. Bulk classification needs a handful of cards, so
this scanner looks at the keyword of each 80-character card and parses only the values
asked for. The walk over extensions serves LAMOST's medium-resolution files, whose 17-21
HDUs astropy took 10 ms to open.

It is deliberately narrow: fixed-format-like cards with a string, logical, integer or real
value, upper-case keywords, ASCII throughout and no CONTINUE (long-string) cards. Anything
else (a value it cannot parse, a lower-case keyword, a header without END) makes
:func:`scan_primary` return None and the caller falls back to astropy, which stays the
reference: tests compare both on every real file and on generated cards.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

BLOCK = 2880
CARD = 80
_END = b"END".ljust(CARD)
_SIMPLE = b"SIMPLE  =                    T"

#: a FITS value field (after "= "): string, logical, integer or real, then an optional
#: comment. Exponents must be upper case E or D (the standard); others go to astropy.
_VALUE = re.compile(
    r"""[ ]*(?:
        '(?P<text>(?:[^']|'')*)'
      | (?P<logical>[TF])
      | (?P<integer>[+-]?[0-9]+)
      | (?P<real>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[ED][+-]?[0-9]+)?)
    )[ ]*(?:/.*)?$""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True)
class PrimaryCards:
    """Values of the requested keywords (first occurrence) and where the data start."""

    values: dict[str, Any]
    data_offset: int

    @property
    def data_size(self) -> int | None:
        """Bytes of this HDU's data (no padding), from BITPIX, NAXISn, PCOUNT and GCOUNT,
        which must have been read; None when they are missing or out of range."""
        values = self.values
        bitpix, naxis = values.get("BITPIX"), values.get("NAXIS")
        if type(bitpix) is not int or bitpix not in (8, 16, 32, 64, -32, -64):
            return None
        if type(naxis) is not int or not 0 <= naxis <= _MAX_AXES:
            return None
        if naxis == 0:
            return 0
        axes = [values.get(f"NAXIS{axis}") for axis in range(1, naxis + 1)]
        pcount, gcount = values.get("PCOUNT", 0), values.get("GCOUNT", 1)
        if any(type(n) is not int or n < 0 for n in (*axes, pcount, gcount)):
            return None
        elements = 1
        for n in axes:
            elements *= n
        return abs(bitpix) // 8 * gcount * (pcount + elements)


#: most axes a header may have for the walk over extensions (tables have 2)
_MAX_AXES = 9
#: the cards that locate each HDU's data
LAYOUT_KEYS = frozenset(
    {"XTENSION", "BITPIX", "NAXIS", "PCOUNT", "GCOUNT", "EXTNAME"}
    | {f"NAXIS{axis}" for axis in range(1, _MAX_AXES + 1)}
)
_XTENSION = b"XTENSION= "


@functools.lru_cache(maxsize=4096)
def parse_value(field: str) -> Any:
    """The value of a card's value field (columns 11-80) as astropy reads it, or None.

    None means "not a plain value" (empty, complex, malformed, or a string card with a
    quote in its text or comment, which astropy reads differently from the standard in
    corner cases such as ``'' / '``): the caller must not guess.
    """
    match = _VALUE.match(field)
    if match is None:
        return None
    text, logical, integer, real = match.group("text", "logical", "integer", "real")
    if text is not None:
        if field.count("'") != 2:  # quotes inside the string or in its comment:
            return None  # astropy's reading of those is the reference
        return text.rstrip()
    if logical is not None:
        return logical == "T"
    if integer is not None:
        return int(integer)
    return float(real.replace("D", "E"))


def scan_primary(content: bytes, keys: Collection[str]) -> PrimaryCards | None:
    """Read ``keys`` from the primary header of FITS ``content``; None when unusual.

    A requested keyword that is absent is simply absent from ``values``. None is returned
    when the file does not start with ``SIMPLE = T``, the header has no END card, contains
    non-ASCII bytes, CONTINUE cards or lower-case keywords, or a requested card's value is
    not a plain string, logical, integer or real.
    """
    if not content.startswith(_SIMPLE):
        return None
    return _scan(content, 0, keys)


def scan_extensions(
    content: bytes, primary: PrimaryCards, keys: Collection[str]
) -> Iterator[PrimaryCards | None]:
    """Read ``keys`` (and :data:`LAYOUT_KEYS`) from each extension header after the primary
    HDU ``primary`` (:func:`scan_primary` with ``LAYOUT_KEYS``), one by one, so that a
    caller can stop once it has the HDUs it wants. A None ends the walk: unusual.

    The walk goes from header to header by each HDU's data size, so no data are read. It
    yields None where :func:`scan_primary` would return None, and also when a header does
    not start with ``XTENSION``, a size card is missing or invalid, or bytes other than a
    header follow an HDU's data. An HDU whose data are cut off ends the walk without
    None: callers check that the data they read are all there.
    """
    if isinstance(keys, frozenset) and keys >= LAYOUT_KEYS:
        wanted = keys
    else:
        wanted = LAYOUT_KEYS | set(keys)
    current: PrimaryCards | None = primary
    while current is not None:
        size = current.data_size
        if size is None:
            yield None
            return
        offset = current.data_offset + -(-size // BLOCK) * BLOCK
        if offset >= len(content):
            return
        if not content.startswith(_XTENSION, offset):
            yield None
            return
        current = _scan(content, offset, wanted)
        yield current


def _scan(content: bytes, offset: int, keys: Collection[str]) -> PrimaryCards | None:
    """The scan of the header that starts at ``offset`` (a multiple of the block size)."""
    end = content.find(_END, offset)
    while end != -1 and end % CARD:  # "END" must start a card
        end = content.find(_END, end + 1)
    if end == -1:
        return None
    header = content[offset:end]
    if not header.isascii():
        return None
    cards = _cards_of(header, keys)
    if cards is None:
        return None
    text = header.decode("ascii")
    values: dict[str, Any] = {}
    for keyword, start in cards:
        if text[start + 8 : start + 10] != "= ":
            return None
        value = parse_value(text[start + 10 : start + CARD])
        if value is None:
            return None
        values[keyword] = value
    data_offset = (end // BLOCK + 1) * BLOCK
    return PrimaryCards(values=values, data_offset=data_offset)


#: _cards_of() answers by (keyword column of a header, keys): a survey's files share a
#: handful of header layouts, so the keywords are located once per layout
_LAYOUTS: dict[tuple[bytes, frozenset[str]], tuple[tuple[str, int], ...] | None] = {}
_LAYOUTS_MAX = 256


def _cards_of(header: bytes, keys: Collection[str]) -> tuple[tuple[str, int], ...] | None:
    """(keyword, offset of its card) of the first card of each of ``keys`` in ``header``
    (whole ASCII cards, no END), or None when a keyword is lower case or CONTINUE."""
    # the keyword columns (8 bytes) of every card, byte for byte
    column = np.frombuffer(header, np.uint8).reshape(-1, CARD)[:, :8].tobytes()
    wanted = keys if isinstance(keys, frozenset) else frozenset(keys)
    layout = (column, wanted)
    if layout in _LAYOUTS:
        return _LAYOUTS[layout]
    text = column.decode("ascii")
    keywords = [text[start : start + 8].rstrip() for start in range(0, len(text), 8)]
    if any(k != k.upper() or k == "CONTINUE" for k in keywords):
        cards = None
    else:
        first: dict[str, int] = {}
        for number, keyword in enumerate(keywords):
            if keyword in wanted and keyword not in first:
                first[keyword] = number * CARD
        cards = tuple(first.items())
    if len(_LAYOUTS) >= _LAYOUTS_MAX:
        _LAYOUTS.clear()
    _LAYOUTS[layout] = cards
    return cards
