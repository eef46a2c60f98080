"""Helpers shared by the readers: bytes, gzip, FITS (astropy), validation, air->vacuum.

Usage::

    from models.io.common import load_content, open_fits, finish_spectrum
    content = load_content(path)                      # bytes, gunzipped when needed
    with open_fits(path, content) as hdus:            # astropy HDUList, truncation checked
        flux = image_data(path, hdus[0])[0]
    spectrum = finish_spectrum(path, wavelength, flux, ivar, meta)

FITS goes through ``astropy.io.fits`` opened on the in-memory bytes, except the plain
LAMOST LRS image layout, whose few needed cards :mod:`models.io.fits_cards` reads directly
(checked against astropy in the tests). identify() helpers (:func:`primary_value`,
:func:`leading_headers`) only look at the first bytes.
"""

from __future__ import annotations

import gzip
import io
import re
import warnings
import zlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyUserWarning

from models.io.base import Spectrum, SpectrumReadError
from models.io.fits_cards import parse_value

GZIP_MAGIC = b"\x1f\x8b"
FITS_MAGIC = b"SIMPLE  ="
FITS_BLOCK = 2880
_CARD = 80
_NAXIS_CARD = re.compile(rb"NAXIS   = *\+?([0-9]+)")
_MAX_NAXIS = 999  # FITS standard 4.0, section 4.4.1.1
_TFIELDS_CARD = re.compile(rb"TFIELDS = *\+?([0-9]+)")
_MAX_TFIELDS = 999  # FITS standard 4.0, section 7.3.1
#: size cards with a negative value (FITS requires NAXISn, PCOUNT, GCOUNT >= 0); one
#: pattern per keyword, each with a literal prefix that the scan can look for quickly
_NEGATIVE_SIZE_CARDS = tuple(
    re.compile(rb"(" + keyword + rb") *= *-[0-9]*[1-9]")
    for keyword in (rb"NAXIS[0-9]{1,3}", rb"PCOUNT", rb"GCOUNT")
)
_END_CARD = b"END".ljust(_CARD)
#: the HDU classes the spectrum readers meet (astropy.io.fits).
Hdu = fits.PrimaryHDU | fits.ImageHDU | fits.BinTableHDU | fits.TableHDU
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
#: first bytes handed to identify(): primary header plus the first extension's header.
HEAD_BYTES = 20 * 2880


def load_content(path: Path, data: bytes | None = None) -> bytes:
    """Return the file's bytes, decompressed when they are gzip (magic 1f 8b).

    ``data``: the file's bytes when they are already in memory (an upload); ``path`` then
    only names the file in error messages and is never opened.

    Raises:
        SpectrumReadError: missing/unreadable file, empty file, corrupt or truncated gzip.
    """
    raw = bytes(data) if data is not None else _read_file(path)
    if not raw:
        raise SpectrumReadError(path, "empty file (0 bytes)")
    if raw.startswith(GZIP_MAGIC):
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise SpectrumReadError(path, f"corrupt or truncated gzip data ({error})") from error
        if not raw:
            raise SpectrumReadError(path, "empty file (gzip holds 0 bytes)")
    return raw


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError as error:
        raise SpectrumReadError(path, "file not found") from error
    except IsADirectoryError as error:
        raise SpectrumReadError(path, "is a directory, not a file") from error
    except OSError as error:
        raise SpectrumReadError(path, f"cannot read file ({error.strerror})") from error


def is_fits(head: bytes) -> bool:
    """True when the bytes start like a FITS primary header (``SIMPLE  =``)."""
    return head.startswith(FITS_MAGIC)


def primary_value(head: bytes, keyword: str) -> Any:
    """Value of ``keyword`` in the primary header of a FITS head, or None when absent.

    astropy parses the header; the first 2880-byte block is tried alone first, which is
    where TELESCOP & co. sit in every survey file here (4x cheaper than the whole header).
    Cheaper still (this runs for every request): an 8-character keyword is looked for at
    the card starts of that block (:func:`_first_block_card`) and only its card is read,
    by :func:`models.io.fits_cards.parse_value` when the value is plain (checked against
    astropy in the tests), else by astropy; anything unusual falls back to parsing the
    block.
    """
    image = _first_block_card(head, keyword)
    if image is not None:
        value = parse_value(image[10:])
        if value is not None:
            return value
        card = fits.Card.fromstring(image)
        if card.keyword == keyword.upper():
            return card.value
    first_block = fits.Header.fromstring(head[:FITS_BLOCK])
    if keyword in first_block:
        return first_block[keyword]
    return fits.Header.fromstring(head).get(keyword)


def _first_block_card(head: bytes, keyword: str) -> str | None:
    """The first card (80 characters) of the first header block whose keyword is
    ``keyword`` and which has a value (``= `` in columns 9-10), or None.

    None also when the keyword is longer than 8 characters, END comes first, the card is
    not ASCII, or the value goes on in CONTINUE cards; the caller then parses the whole
    block as before (same value, same errors).
    """
    key = keyword.upper().encode("ascii")
    if len(key) > 8:
        return None
    wanted = key.ljust(8) + b"= "
    block = head[:FITS_BLOCK]
    start = block.find(wanted)
    while start != -1 and start % _CARD:
        start = block.find(wanted, start + 1)
    if start == -1 or start + _CARD > len(block):
        return None
    end = block.find(_END_CARD)
    while end != -1 and end % _CARD:
        end = block.find(_END_CARD, end + 1)
    if end != -1 and end < start:
        return None
    image = block[start : start + _CARD]
    if not image.isascii() or head[start + _CARD : start + _CARD + 8] == b"CONTINUE":
        return None
    return image.decode("ascii")


def leading_headers(head: bytes, max_hdus: int = 20) -> list[fits.Header]:
    """Headers of the first HDUs that fit in ``head`` (the first bytes of a FITS file).

    Stops quietly at the first HDU that is cut off or unreadable (the head is short on
    purpose); [] when even the primary header is. read_spectrum() reports such problems.
    """
    if impossible_sizes(head) is not None:
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # truncation of the head itself
        try:
            hdus = fits.open(io.BytesIO(head), memmap=False, lazy_load_hdus=True)
        except OSError:
            return []
        with hdus:
            headers = []
            for index in range(max_hdus):
                try:
                    headers.append(hdus[index].header)
                except IndexError:
                    break
    return headers


def header_shape(header: fits.Header) -> tuple[int, ...]:
    """Data shape in numpy order (slowest axis first) from NAXISn; () when there is none."""
    naxis = int(header.get("NAXIS", 0))
    return tuple(int(header.get(f"NAXIS{axis}", 0)) for axis in range(naxis, 0, -1))


def header_kind(header: fits.Header) -> str:
    """'image' (primary or IMAGE extension), 'bintable', 'table' or the XTENSION value."""
    if "SIMPLE" in header:
        return "image"
    return str(header.get("XTENSION", "")).strip().lower()


def hdu_name(hdu: Hdu) -> str:
    """EXTNAME in upper case ('PRIMARY' for a primary HDU without one, '' otherwise)."""
    return hdu.name.strip().upper()


def describe_layout(headers: list[fits.Header]) -> str:
    """'PRIMARY (5, 3904), COADD (1, 4200)...': names (or kinds) and shapes, for messages."""
    parts = []
    for index, header in enumerate(headers):
        name = str(header.get("EXTNAME", "PRIMARY" if index == 0 else "")).strip().upper()
        parts.append(f"{name or header_kind(header)} {header_shape(header)}")
    return ", ".join(parts)


def impossible_sizes(content: bytes) -> str | None:
    """Why a header's sizes are impossible, or None: NAXIS over the standard's 999,
    TFIELDS over 999, or a negative NAXISn, PCOUNT or GCOUNT.

    astropy builds a list with one entry per axis (or column) before it checks anything,
    so a corrupt ``NAXIS = 99999999`` kept a request busy for over a minute (found by the
    fuzz test with more examples), and ``TFIELDS = 9999999999`` likewise; a negative
    ``NAXIS1`` in an extension sent its reading of the following HDUs into a loop that
    did not end within minutes (found by fuzzing a medium-resolution file). Only cards at
    80-byte boundaries count.
    """
    for match in _NAXIS_CARD.finditer(content):
        if match.start() % _CARD == 0 and int(match.group(1)) > _MAX_NAXIS:
            return f"corrupt header: NAXIS = {int(match.group(1))} (FITS allows at most 999 axes)"
    for match in _TFIELDS_CARD.finditer(content):
        if match.start() % _CARD == 0 and int(match.group(1)) > _MAX_TFIELDS:
            number = int(match.group(1))
            return f"corrupt header: TFIELDS = {number} (FITS allows at most 999 columns)"
    for pattern in _NEGATIVE_SIZE_CARDS:
        for match in pattern.finditer(content):
            if match.start() % _CARD == 0:
                keyword = match.group(1).decode("ascii")
                return f"corrupt header: {keyword} is negative (sizes must be 0 or more)"
    return None


def open_fits(path: Path, content: bytes) -> fits.HDUList:
    """Every HDU of a FITS file held in memory, with astropy (use as a context manager).

    Headers are parsed now, data on first access. astropy warns about truncated data,
    unreadable headers and trailing bytes; any such warning sends the file to
    :func:`_open_damaged`, which names the problem. Missing padding after the last data
    block and trailing bytes that do not start an extension are tolerated there.

    Raises:
        SpectrumReadError: not FITS, a header without END card, or data cut off
            ("truncated FITS file (expected N bytes, got M)").
    """
    if not is_fits(content):
        raise SpectrumReadError(path, "not a FITS file (no SIMPLE card)")
    problem = impossible_sizes(content)
    if problem is not None:
        raise SpectrumReadError(path, problem)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", AstropyUserWarning)
            hdus = fits.open(io.BytesIO(content), memmap=False, lazy_load_hdus=True)
            hdus.readall()  # every header; the data stay unread until accessed
    except (AstropyUserWarning, OSError):
        return _open_damaged(path, content)
    return hdus


def _open_damaged(path: Path, content: bytes) -> fits.HDUList:
    """open_fits() for a file astropy warned about: find what is wrong from the HDU layout."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyUserWarning)  # diagnosed below
        try:
            hdus = fits.open(io.BytesIO(content), memmap=False, lazy_load_hdus=True)
        except OSError as error:
            raise SpectrumReadError(path, _header_problem(content, 0, 0)) from error
        hdus.readall()
    end = 0
    for index, hdu in enumerate(hdus):
        info = hdus.fileinfo(index)
        end = info["datLoc"] + info["datSpan"]
        if info["datLoc"] + hdu.size > len(content):
            hdus.close()
            raise SpectrumReadError(
                path, f"truncated FITS file (expected {end} bytes, got {len(content)})"
            )
    if content[end : end + 8] == b"XTENSION":  # astropy stopped at an unreadable extension
        hdus.close()
        raise SpectrumReadError(path, _header_problem(content, end, len(hdus)))
    return hdus


def _header_problem(content: bytes, offset: int, index: int) -> str:
    """Why astropy could not read the header of HDU ``index`` starting at byte ``offset``."""
    cards = range(offset, len(content) - _CARD + 1, _CARD)
    if not any(content[start : start + _CARD] == _END_CARD for start in cards):
        return f"truncated FITS file (header of HDU {index} at byte {offset} has no END card)"
    try:
        fits.Header.fromfile(io.BytesIO(content[offset:]))
    except (OSError, ValueError) as error:
        return f"corrupt FITS header of HDU {index} at byte {offset} ({error})"
    return f"corrupt FITS header of HDU {index} at byte {offset} (rejected by astropy)"


def image_data(path: Path, hdu: fits.PrimaryHDU | fits.ImageHDU) -> np.ndarray:
    """An image HDU's data as a float64 array (BSCALE/BZERO applied by astropy)."""
    try:
        return np.asarray(hdu.data, dtype=np.float64)
    except (OSError, ValueError, TypeError) as error:
        raise SpectrumReadError(path, f"unreadable image data in HDU {hdu_name(hdu)!r}") from error


def column_names(hdu: fits.BinTableHDU) -> list[str]:
    """The TTYPEn names of a table HDU, in column order (case kept)."""
    return list(hdu.columns.names)


def table_column(path: Path, hdu: fits.BinTableHDU, name: str) -> np.ndarray:
    """One table column (case-insensitive name): float columns as float64, others as stored.

    Raises:
        KeyError: no such column.
        SpectrumReadError: astropy cannot decode the table data.
    """
    if name.upper() not in {column.upper() for column in column_names(hdu)}:
        raise KeyError(name)
    try:
        values = np.asarray(hdu.data[name])
    except (OSError, ValueError, TypeError) as error:
        raise SpectrumReadError(
            path, f"unreadable table column {name!r} in HDU {hdu_name(hdu)!r} ({error})"
        ) from error
    return values.astype(np.float64) if values.dtype.kind == "f" else values


def image_format(head: bytes) -> str | None:
    """'JPEG' or 'PNG' when the bytes start with that format's magic number, else None."""
    if head.startswith(JPEG_MAGIC):
        return "JPEG"
    if head.startswith(PNG_MAGIC):
        return "PNG"
    return None


def vacuum_from_air(wavelength_air: np.ndarray) -> np.ndarray:
    """Air -> vacuum wavelengths (Angstrom) with :func:`models.preprocess.air_to_vacuum`.

    Imported here rather than at module level: ``models.preprocess`` imports ``models.io``,
    so a top-level import would be circular (and PyAstronomy is slow to import).
    """
    from models.preprocess import air_to_vacuum

    return air_to_vacuum(wavelength_air)


def header_values(header: Mapping[str, Any], keys: Iterable[str]) -> dict[str, Any]:
    """``{key: header[key]}`` for the keys present, each card's value parsed once.

    Cheaper than one ``header.get`` per use: astropy re-reads its configuration on every
    card value access and raises (and catches) a KeyError for every missing keyword.
    """
    return {key: header[key] for key in keys if key in header}


def header_text(header: Mapping[str, Any], key: str) -> str | None:
    """A header value as a stripped string, or None when absent or blank."""
    value = header.get(key)
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def header_float(header: Mapping[str, Any], key: str, missing: float = -9999.0) -> float | None:
    """A header value as float, or None when absent, non-numeric, non-finite or == missing."""
    value = header.get(key)
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not np.isfinite(number) or number == missing:
        return None
    return number


def drop_missing(meta: dict[str, Any]) -> dict[str, Any]:
    """The meta dict without None values and without empty snr dicts."""
    return {key: value for key, value in meta.items() if value is not None and value != {}}


def finish_spectrum(
    path: Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    meta: dict[str, Any],
) -> Spectrum:
    """Validate arrays and build the Spectrum every reader returns.

    Converts to float64, sorts by wavelength when it decreases or is unordered, zeroes ivar
    where flux or ivar is not finite or ivar < 0, and rejects what cannot be a spectrum.

    Raises:
        SpectrumReadError: mismatched lengths, non-finite or repeated wavelengths, fewer
            than 2 pixels, or no usable pixel (e.g. NaN-only flux).
    """
    wavelength = np.asarray(wavelength, dtype=np.float64).ravel()
    flux = np.asarray(flux, dtype=np.float64).ravel()
    ivar = np.asarray(ivar, dtype=np.float64).ravel()
    if not wavelength.size == flux.size == ivar.size:
        raise SpectrumReadError(
            path,
            f"array lengths differ (wavelength {wavelength.size}, flux {flux.size}, "
            f"ivar {ivar.size})",
        )
    if wavelength.size < 2:
        raise SpectrumReadError(path, f"only {wavelength.size} pixel(s); not a spectrum")
    if not np.all(np.isfinite(wavelength)) or np.any(wavelength <= 0):
        raise SpectrumReadError(path, "wavelength array has non-finite or non-positive values")
    step = np.diff(wavelength)
    if not np.all(step > 0):
        order = np.argsort(wavelength, kind="stable")
        wavelength, flux, ivar = wavelength[order], flux[order], ivar[order]
        if not np.all(np.diff(wavelength) > 0):
            raise SpectrumReadError(path, "wavelength array has repeated values")
    usable = np.isfinite(flux) & np.isfinite(ivar) & (ivar > 0)
    ivar = np.where(usable, ivar, 0.0)
    if not usable.any():
        raise SpectrumReadError(
            path, "no usable pixels (flux is NaN/inf everywhere or every pixel is masked)"
        )
    return Spectrum(wavelength=wavelength, flux=flux, ivar=ivar, meta=drop_missing(meta))
