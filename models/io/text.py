"""Text spectra: JHC atlas/dwarf files, Pickles .sed files and generic 2-3 column ASCII/CSV.

Usage::

    from models.io import text
    spectrum = text.read(Path("HD10032.txt"))

Format: one pixel per line, columns separated by commas, semicolons or whitespace:
``wavelength [Angstrom], flux[, third]``. Lines starting with '#' are comments; one
non-numeric header line is allowed before the data. The third column is the 1-sigma flux
ERROR (ivar = 1/error**2; error <= 0 or NaN masks the pixel) unless the header line names it
``ivar``/``inverse variance`` (taken as is) or ``var``/``variance`` (ivar = 1/var). Without
a third column ivar is 1 for every finite flux.

The library is recognised by content, not name, and ``meta["source"]`` says which:

- ``"jhc"``: Jacoby, Hunter & Christian (1984) grid, 3510-7427.2 A in 1.4 A steps, AIR.
  Files whose comments say the flux was "shifted" (the Cambridge copy of the 13 dwarf
  standards) were normalised to 1 at 5500 A and then offset by an integer per type: the
  offset is recovered as ``round(median flux within 7 A of 5500 A - 1)``, subtracted, and
  stored in ``meta["integer_offset"]``.
- ``"pickles"``: Pickles (1998), 1145-25005 A in 5 A steps. Its README does not state the
  medium; the optical parts come from ground-based (air) spectra, so we treat 2000 A and
  redder as AIR (the IAU convention; bluer IUE data are vacuum) and convert that part with
  :func:`models.preprocess.air_to_vacuum` (which handles the range beyond Ciddor's
  3000-16900 A). Zero flux marks no data.
- ``"text"``: anything else. The medium is read from a comment or header mentioning 'air'
  or 'vacuum'; otherwise vacuum is assumed and ``wavelength_medium_original`` says so.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np

from models.io.base import Spectrum, SpectrumReadError
from models.io.common import (
    GZIP_MAGIC,
    finish_spectrum,
    image_format,
    is_fits,
    load_content,
    vacuum_from_air,
)

_SEPARATORS_TO_SPACE = str.maketrans(",;", "  ")
_CONTROL_BYTES = frozenset(set(range(32)) - {9, 10, 11, 12, 13})
_SNIFF_BYTES = 4096
_NUMBER = re.compile(
    r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?|[+-]?(nan|inf|infinity)", flags=re.IGNORECASE
)
_JHC_GRID = (3510.0, 1.4, 7427.2)  # start, step, stop (Angstrom)
_PICKLES_GRID = (1145.0, 5.0, None)
_AIR_CONVENTION_MIN = 2000.0
_JHC_TITLE = re.compile(r"Spectrum of\s+(?P<star>.+?),\s*spectral type\s+(?P<sptype>\S+)")


def identify(head: bytes, path: Path | None = None) -> bool:
    """True for content that is plain text (no NUL/control bytes, not FITS/gzip/image)."""
    if not head or is_fits(head) or head.startswith(GZIP_MAGIC) or image_format(head):
        return False
    return not any(byte in _CONTROL_BYTES for byte in head[:_SNIFF_BYTES])


def looks_numeric(head: bytes) -> bool:
    """True when the first data line (after comments and one header) has 2-3 numbers."""
    lines = _data_lines(head.decode("utf-8", errors="replace").splitlines()[:50])
    rows = [line for _, line in lines]
    if rows and not _numeric_fields(rows[0]):
        rows = rows[1:]
    return bool(rows) and len(_numeric_fields(rows[0]) or []) in (2, 3)


def read(path: Path, content: bytes | None = None) -> Spectrum:
    """Parse a text spectrum and recognise the JHC / Pickles libraries by their grids.

    Args:
        path: the file; used for error messages when ``content`` is given.
        content: the file's (decompressed) bytes when the caller already has them.
    """
    path = Path(path)
    content = load_content(path) if content is None else content
    if not identify(content, path):
        raise SpectrumReadError(path, "not a text file (binary content)")
    lines = content.decode("utf-8", errors="replace").splitlines()
    comments = "\n".join(line for line in lines if line.lstrip().startswith("#"))
    table, header_line = _parse_table(path, lines)
    wavelength, flux = table[:, 0], table[:, 1]
    ivar, third = _ivar(table, header_line)
    meta: dict[str, Any] = {"third_column": third}
    if _on_grid(wavelength, *_JHC_GRID):
        return _finish_jhc(path, wavelength, flux, ivar, comments, meta)
    if _on_grid(wavelength, *_PICKLES_GRID):
        meta.update(source="pickles", format="pickles_sed", resolution="low")
        meta["wavelength_medium_original"] = "air (>= 2000 A; assumed, see models.io.text)"
        ivar = np.where(flux == 0, 0.0, ivar)
        return finish_spectrum(path, _pickles_vacuum(wavelength), flux, ivar, meta)
    medium = _medium_hint(f"{comments}\n{header_line or ''}")
    meta.update(source="text", format="text_columns")
    meta["wavelength_medium_original"] = medium or "unknown (assumed vacuum)"
    if medium == "air":
        wavelength = vacuum_from_air(wavelength)
    return finish_spectrum(path, wavelength, flux, ivar, meta)


def _data_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(1-based line number, text) of non-blank, non-comment lines."""
    return [
        (number, line)
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


def _fields(line: str) -> list[str]:
    """The line split on commas, semicolons and whitespace (empty fields dropped)."""
    return line.translate(_SEPARATORS_TO_SPACE).split()


def _numeric_fields(line: str) -> list[float] | None:
    """The line's fields as floats, or None when any field is not a number."""
    fields = _fields(line)
    if not all(_NUMBER.fullmatch(field) for field in fields):
        return None
    return [float(field) for field in fields]


def _parse_table(path: Path, lines: list[str]) -> tuple[np.ndarray, str | None]:
    """(n_rows, 2 or 3) float array and the header line (None when absent)."""
    rows = _data_lines(lines)
    header_line = None
    if rows and _numeric_fields(rows[0][1]) is None:
        header_line = rows.pop(0)[1]
    if len(rows) < 2:
        raise SpectrumReadError(path, "unknown text format: fewer than 2 numeric data lines")
    split_rows = [_fields(line) for _, line in rows]
    n_columns = len(split_rows[0])
    if n_columns not in (2, 3):
        raise SpectrumReadError(
            path,
            f"unknown text format: line {rows[0][0]} has {n_columns} columns; expected 2 or 3 "
            "(wavelength, flux[, error])",
        )
    for (number, line), fields in zip(rows, split_rows, strict=True):
        if len(fields) != n_columns:
            raise SpectrumReadError(
                path,
                f"unknown text format: line {number} ({line.strip()[:40]!r}) has "
                f"{len(fields)} columns, the first data line {n_columns}",
            )
    try:
        values = np.array([field for fields in split_rows for field in fields], dtype=np.float64)
    except ValueError as error:
        bad_rows = ((number, line) for number, line in rows if _numeric_fields(line) is None)
        number, line = next(bad_rows, rows[0])
        raise SpectrumReadError(
            path, f"unknown text format: line {number} ({line.strip()[:40]!r}) is not numeric"
        ) from error
    return values.reshape(len(rows), n_columns), header_line


def _ivar(table: np.ndarray, header_line: str | None) -> tuple[np.ndarray, str | None]:
    """ivar from the optional third column and what that column was taken to be."""
    if table.shape[1] == 2:
        return np.ones(table.shape[0]), None
    third = table[:, 2]
    names = [field.lower() for field in _fields(header_line or "")]
    name = names[2] if len(names) >= 3 else ""
    if "ivar" in name or "inv" in name:
        return third, "ivar"
    usable = np.isfinite(third) & (third > 0)
    safe = np.where(usable, third, 1.0)
    if "var" in name:
        return np.where(usable, 1.0 / safe, 0.0), "variance"
    return np.where(usable, 1.0 / safe**2, 0.0), "error"


def _on_grid(wavelength: np.ndarray, start: float, step: float, stop: float | None = None) -> bool:
    """True when the wavelengths start at ``start`` with uniform ``step`` (and end at stop)."""
    if abs(wavelength[0] - start) > 0.01 or wavelength.size < 10:
        return False
    if stop is not None and abs(wavelength[-1] - stop) > 0.01:
        return False
    return bool(np.all(np.abs(np.diff(wavelength) - step) < 0.01))


def _finish_jhc(
    path: Path,
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    comments: str,
    meta: dict[str, Any],
) -> Spectrum:
    """JHC grid: undo the per-type integer offset of the dwarf files, air -> vacuum."""
    meta.update(source="jhc", format="jhc_atlas", resolution="low")
    meta["wavelength_medium_original"] = "air"
    title = _JHC_TITLE.search(comments)
    if title is not None:
        meta.update(object_id=title["star"].strip(), spectral_type=title["sptype"])
    if "shifted" in comments.lower():
        near_5500 = np.abs(wavelength - 5500.0) <= 7.0
        offset = int(np.rint(np.nanmedian(flux[near_5500]) - 1.0))
        flux = flux - offset
        meta.update(format="jhc_dwarf_shifted", integer_offset=offset)
    return finish_spectrum(path, vacuum_from_air(wavelength), flux, ivar, meta)


def _pickles_vacuum(wavelength: np.ndarray) -> np.ndarray:
    """Pickles grid to vacuum: the UV part (< 2000 A) is vacuum already, the rest is air."""
    vacuum = wavelength.copy()
    air = wavelength >= _AIR_CONVENTION_MIN
    vacuum[air] = vacuum_from_air(wavelength[air])
    return vacuum


def _medium_hint(text: str) -> str | None:
    """'air' or 'vacuum' when the comments/header say so, else None."""
    lowered = text.lower()
    if re.search(r"\bvac(uum)?\b", lowered):
        return "vacuum"
    if re.search(r"\bair\b", lowered):
        return "air"
    return None
