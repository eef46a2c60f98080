"""LAMOST reader: low-resolution 'image' files (DR1-DR7), DR8+ tables, medium-resolution files.

Usage::

    from models.io import lamost
    spectrum = lamost.read(Path("spec-55862-B6212_sp06-005.fits"))

Layouts, chosen from the HDUs (never from the file name):

- LRS image (DR1-DR7): primary HDU of shape (5, N): flux, ivar, row 2, andmask, ormask.
  Wavelength is ALWAYS ``10**(COEFF0 + COEFF1 * i)``: in pipeline v2.6.4 files row 2 is a
  continuum-normalised flux, not wavelength.
- LRS table (DR8+ 'v2.0'): empty primary HDU, HDU 1 a binary table ('COADD') with one row
  of array columns FLUX, IVAR, WAVELENGTH, ANDMASK, ORMASK. The structure follows public
  readers of such files: LiangJunC/PyLASP ``uly_read_lms/uly_spect_read_lms.py``
  (``f[1].data["FLUX"][0]``, ``["IVAR"][0]``, ``["ANDMASK"][0]``, header CRVAL1/CD1_1 in HDU 0),
  YunyuG/Cmost ``src/cmost/io.py`` (DR >= 8: ``hdu[1].data[0]``, wavelength = field 2) and
  MultimodalUniverse ``scripts/lamost/build_parent_sample.py`` (``FLUX``/``WAVELENGTH``
  of shape (1, n)). Wavelength comes from COEFF0/COEFF1 when the primary header has them,
  else from the WAVELENGTH column.
- MRS (``med-*.fits``): HDU 'Information' + COADD_B / COADD_R tables (LOGLAM, FLUX, IVAR,
  ANDMASK). Blue (~4950-5350 A) and red (~6300-6800 A) coadds are concatenated; the gap
  between them has no pixels. ``meta["resolution"] = "medium"`` (R ~ 7500) so that
  consumers can degrade or refuse it.

Pixels with a nonzero AND mask get ivar 0. LAMOST wavelengths are vacuum (VACUUM = T).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from models.io.base import Spectrum, SpectrumReadError
from models.io.common import (
    Hdu,
    column_names,
    describe_layout,
    finish_spectrum,
    hdu_name,
    header_float,
    header_shape,
    header_text,
    header_values,
    image_data,
    is_fits,
    load_content,
    open_fits,
    primary_value,
    table_column,
    vacuum_from_air,
)
from models.io.fits_cards import LAYOUT_KEYS, PrimaryCards, scan_extensions, scan_primary

_SNR_KEYS = {band: (f"SN_{band.upper()}", f"SNR{band.upper()}") for band in "ugriz"}
_MRS_BANDS = {"COADD_B": "B", "COADD_R": "R"}
#: primary-header keywords read by _header_meta().
_META_KEYS = (
    *(key for keys in _SNR_KEYS.values() for key in keys),
    *("OBSID", "DESIG", "RA", "DEC", "Z", "Z_ERR", "CLASS", "SUBCLASS", "VERSPIPE"),
    *("DATA_V", "OBJTYPE", "LMJD", "PLANID", "SPID", "FIBERID"),
)


#: cards the astropy-free LRS image path reads (see _read_lrs_image_fast).
_FAST_KEYS = frozenset(
    {"BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE", "BLANK", "TELESCOP"}
    | {"COEFF0", "COEFF1", "VACUUM", *_META_KEYS}
)
_FAST_DTYPES = {-32: np.dtype(">f4"), -64: np.dtype(">f8")}
#: primary-header cards the astropy-free MRS path reads
_MRS_PRIMARY_KEYS = _FAST_KEYS | LAYOUT_KEYS

_COLUMN_CARDS = ("TTYPE", "TFORM", "TSCAL", "TZERO", "TDIM")
_COLUMN_NUMBERS = range(1, 1000)  # TFIELDS is at most 999
#: cards the astropy-free MRS path reads from each extension (see _read_mrs_fast)
_TABLE_KEYS = frozenset(
    LAYOUT_KEYS
    | {"TFIELDS", "THEAP", "SNR"}
    | {f"{card}{n}" for card in _COLUMN_CARDS for n in _COLUMN_NUMBERS}
)
#: scalar binary-table columns (repeat count 1) as stored: FITS letter -> numpy type
_TFORM_DTYPES = {"E": ">f4", "D": ">f8", "I": ">i2", "J": ">i4", "K": ">i8", "B": "u1"}
_SCALAR_TFORM = re.compile(r"1?([EDIJKB])")


def identify(head: bytes, path: Path | None = None) -> bool:
    """True for a FITS file whose primary header says TELESCOP = 'LAMOST'."""
    if not is_fits(head):
        return False
    return str(primary_value(head, "TELESCOP") or "").strip() == "LAMOST"


def read(path: Path, content: bytes | None = None) -> Spectrum:
    """Read any supported LAMOST layout (see module docstring).

    Args:
        path: the file; used for error messages when ``content`` is given.
        content: the file's (decompressed) bytes when the caller already has them.
    """
    path = Path(path)
    content = load_content(path) if content is None else content
    fast = _read_lrs_image_fast(path, content)
    if fast is None:
        fast = _read_mrs_fast(path, content)
    if fast is not None:
        return fast
    with open_fits(path, content) as hdus:
        primary = hdus[0]
        shape = header_shape(primary.header)
        if len(shape) == 2:
            return _read_lrs_image(path, primary, shape)
        names = [hdu_name(hdu) for hdu in hdus]
        if any(name in _MRS_BANDS for name in names):
            return _read_mrs(path, hdus)
        if len(hdus) > 1 and _is_lrs_table(hdus[1]):
            return _read_lrs_table(path, hdus)
        layout = describe_layout([hdu.header for hdu in hdus])
    raise SpectrumReadError(
        path,
        f"LAMOST file with an unrecognised HDU layout ({layout}); expected a 5 x N primary "
        "image, a COADD table or COADD_B/COADD_R tables",
    )


def _read_lrs_image(path: Path, primary: Hdu, shape: tuple[int, ...]) -> Spectrum:
    """DR1-DR7 image layout: rows flux, ivar, (ignored), andmask, ormask."""
    n_rows, n_pix = shape
    if n_rows != 5:
        raise SpectrumReadError(
            path,
            f"LAMOST primary image has shape {n_rows} x {n_pix}; expected 5 rows "
            "(flux, ivar, wavelength or normalised flux, andmask, ormask)",
        )
    return _lrs_image_spectrum(path, primary.header, image_data(path, primary))


def _lrs_image_spectrum(path: Path, header: Mapping[str, Any], rows: np.ndarray) -> Spectrum:
    """The spectrum of the 5 x N LRS image ``rows`` (float64) and its primary header."""
    wavelength = _coeff_wavelength(path, header, rows.shape[1])
    ivar = np.where(rows[3] != 0, 0.0, rows[1])
    meta = _header_meta(header, "lamost_lrs_image")
    return _finish(path, header, wavelength, rows[0], ivar, meta)


def _read_lrs_image_fast(path: Path, content: bytes) -> Spectrum | None:
    """The LRS image layout without astropy, or None when the file is anything else.

    The bulk of a survey is this layout, and astropy's header parsing (~1 ms) would be
    most of the cost of classifying it. :func:`models.io.fits_cards.scan_primary` reads
    only the cards used here; anything it does not vouch for (and any file that is not a
    complete, unscaled 5 x N float image) returns None, and :func:`read` goes through
    astropy as before. Tests check that both paths give identical spectra. Bytes after
    the primary data (padding, any extension) are not looked at: a damaged extension
    behind an intact LRS image does not stop the spectrum from being read here, where
    astropy's path would reject the file.
    """
    primary = scan_primary(content, _FAST_KEYS)
    if primary is None:
        return None
    values = primary.values
    dtype = _FAST_DTYPES.get(values.get("BITPIX"))
    if (
        dtype is None
        or values.get("NAXIS") != 2
        or values.get("NAXIS2") != 5
        or values.get("TELESCOP") != "LAMOST"
        or not isinstance(values.get("NAXIS1"), int)
        or values["NAXIS1"] < 2
        or not {"BZERO", "BSCALE", "BLANK"}.isdisjoint(values)
    ):
        return None
    n_pix = values["NAXIS1"]
    count = 5 * n_pix
    if len(content) < primary.data_offset + count * dtype.itemsize:
        return None  # truncated: astropy's path names the problem
    rows = np.frombuffer(content, dtype, count, primary.data_offset).reshape(5, n_pix)
    return _lrs_image_spectrum(path, values, rows.astype(np.float64))


def _coeff_wavelength(path: Path, header: Mapping[str, Any], n_pix: int) -> np.ndarray:
    """``10**(COEFF0 + COEFF1 * i)``; raises when the keywords are missing."""
    coeff0 = header_float(header, "COEFF0")
    coeff1 = header_float(header, "COEFF1")
    if coeff0 is None or coeff1 is None:
        raise SpectrumReadError(
            path, "no spectral axis: LAMOST header lacks the COEFF0/COEFF1 wavelength keywords"
        )
    wavelength = _log_linear_grid(coeff0, coeff1, n_pix)
    if n_pix and not (np.isfinite(wavelength[-1]) and wavelength[0] > 0 and coeff1 > 0):
        raise SpectrumReadError(
            path,
            f"no spectral axis: COEFF0 = {coeff0:g} and COEFF1 = {coeff1:g} do not give "
            "increasing, finite wavelengths",
        )
    return wavelength


@functools.lru_cache(maxsize=64)
def _log_linear_grid(coeff0: float, coeff1: float, n_pix: int) -> np.ndarray:
    """``10**(coeff0 + coeff1 * i)``, read-only and cached: every LAMOST LRS file seen so
    far shares one (COEFF0, COEFF1) and a handful of lengths, and the power was a fifth
    of the cost of reading a file."""
    with np.errstate(over="ignore"):  # absurd coefficients are rejected by the caller
        wavelength = 10.0 ** (coeff0 + coeff1 * np.arange(n_pix, dtype=np.float64))
    wavelength.setflags(write=False)
    return wavelength


def _is_lrs_table(hdu: Hdu) -> bool:
    """A one-row binary table with FLUX and IVAR array columns (DR8+ LRS 'COADD')."""
    if not isinstance(hdu, fits.BinTableHDU):
        return False
    return {"FLUX", "IVAR"} <= {name.upper() for name in column_names(hdu)}


def _read_lrs_table(path: Path, hdus: fits.HDUList) -> Spectrum:
    """DR8+ layout: HDU 1 table, one row, array columns FLUX/IVAR/WAVELENGTH/ANDMASK."""
    table = hdus[1]
    flux = _column(path, table, "FLUX")[0]
    ivar = _column(path, table, "IVAR")[0]
    columns = {name.upper() for name in column_names(table)}
    if "ANDMASK" in columns:
        ivar = np.where(_column(path, table, "ANDMASK")[0] != 0, 0.0, ivar)
    header = hdus[0].header
    if "COEFF0" in header and "COEFF1" in header:
        wavelength = _coeff_wavelength(path, header, flux.size)
        source = "COEFF0/COEFF1"
    elif "WAVELENGTH" in columns:
        wavelength = _column(path, table, "WAVELENGTH")[0]
        source = "WAVELENGTH column"
    else:
        raise SpectrumReadError(
            path, "no spectral axis: LAMOST table has no WAVELENGTH column and no COEFF0/COEFF1"
        )
    meta = _header_meta(header, "lamost_lrs_table")
    meta["wavelength_source"] = source
    return _finish(path, header, wavelength, flux, ivar, meta)


def _read_mrs(path: Path, hdus: fits.HDUList) -> Spectrum:
    """Medium-resolution file: COADD_B and COADD_R concatenated (sorted by wavelength)."""
    parts = []
    snr: dict[str, float] = {}
    for hdu in hdus:
        band = _MRS_BANDS.get(hdu_name(hdu))
        if band is None or int(hdu.header.get("NAXIS2", 0)) == 0:
            continue
        loglam = _column(path, hdu, "LOGLAM")
        ivar = _column(path, hdu, "IVAR")
        ivar = np.where(_column(path, hdu, "ANDMASK") != 0, 0.0, ivar)
        parts.append((10.0 ** loglam.astype(np.float64), _column(path, hdu, "FLUX"), ivar))
        band_snr = header_float(hdu.header, "SNR")
        if band_snr is not None:
            snr[band] = band_snr
    if not parts:
        raise SpectrumReadError(path, "LAMOST MRS file has empty COADD_B and COADD_R tables")
    wavelength, flux, ivar = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    header = hdus[0].header
    meta = _header_meta(header, "lamost_mrs")
    meta.update(resolution="medium", snr=snr, wavelength_source="LOGLAM columns")
    return _finish(path, header, wavelength, flux, ivar, meta)


def _read_mrs_fast(path: Path, content: bytes) -> Spectrum | None:
    """The MRS layout without astropy, or None when the file is anything else.

    astropy parsed all 17-21 headers of a ``med-*`` file (two coadds and the single
    exposures) and decoded the coadd tables through its column machinery: 10 ms per file,
    twenty times an LRS file. Here :func:`models.io.fits_cards.scan_extensions` walks the
    headers, and the COADD_B / COADD_R rows are read with numpy from the bytes. Tables
    with anything but scalar float or integer columns, scaled columns (TSCAL/TZERO), a
    heap, a band that appears twice, a column missing, or data cut off return None and go
    through astropy as before, which names any problem. Tests check that both paths give
    identical spectra. As for the LRS image path, the single-exposure HDUs after the
    coadds are not looked at: a damaged exposure does not stop the coadds from being read
    here, and a second COADD_B after both coadds is not seen (astropy's path would append
    it; one before them sends the file to astropy).
    """
    primary = scan_primary(content, _MRS_PRIMARY_KEYS)
    if (
        primary is None
        or primary.values.get("NAXIS") != 0
        or primary.values.get("TELESCOP") != "LAMOST"
    ):
        return None
    parts, snr, seen = [], {}, set()
    for hdu in scan_extensions(content, primary, _TABLE_KEYS):
        if hdu is None:
            return None
        band = _MRS_BANDS.get(str(hdu.values.get("EXTNAME", "")).strip().upper())
        if band is None:
            continue
        if band in seen:
            return None
        seen.add(band)
        if hdu.values.get("NAXIS2", 0) != 0 and not _add_band(content, hdu, band, parts, snr):
            return None
        if len(seen) == len(_MRS_BANDS):
            break  # the single exposures that follow are not needed
    if not parts:
        return None
    wavelength, flux, ivar = (np.concatenate(arrays) for arrays in zip(*parts, strict=True))
    meta = _header_meta(primary.values, "lamost_mrs")
    meta.update(resolution="medium", snr=snr, wavelength_source="LOGLAM columns")
    return _finish(path, primary.values, wavelength, flux, ivar, meta)


def _add_band(
    content: bytes, hdu: PrimaryCards, band: str, parts: list, snr: dict[str, float]
) -> bool:
    """Append one coadd's (wavelength, flux, ivar) to ``parts`` as :func:`_read_mrs` does;
    False when the table is not one the fast path reads."""
    table = _table_rows(content, hdu)
    if table is None or not {"FLUX", "IVAR", "LOGLAM", "ANDMASK"} <= set(table.dtype.names):
        return False
    loglam, flux, ivar = (_as_read(table[name]) for name in ("LOGLAM", "FLUX", "IVAR"))
    ivar = np.where(table["ANDMASK"] != 0, 0.0, ivar)
    parts.append((10.0**loglam, flux, ivar))
    band_snr = header_float(hdu.values, "SNR")
    if band_snr is not None:
        snr[band] = band_snr
    return True


def _table_rows(content: bytes, hdu: PrimaryCards) -> np.ndarray | None:
    """The rows of a binary table of scalar columns (upper-case names), or None."""
    values = hdu.values
    fields = values.get("TFIELDS")
    if (
        values.get("XTENSION") != "BINTABLE"
        or values.get("NAXIS") != 2
        or values.get("BITPIX") != 8
        or values.get("PCOUNT", 0) != 0
        or values.get("GCOUNT", 1) != 1
        or "THEAP" in values
        or type(fields) is not int
        or not 1 <= fields <= 999
    ):
        return None
    columns = []
    for n in range(1, fields + 1):
        name, form = values.get(f"TTYPE{n}"), values.get(f"TFORM{n}")
        if not isinstance(name, str) or not isinstance(form, str):
            return None
        if not name.strip() or name != name.lstrip():  # astropy keeps leading blanks
            return None
        if any(f"{card}{n}" in values for card in ("TSCAL", "TZERO", "TDIM")):
            return None
        match = _SCALAR_TFORM.fullmatch(form.strip())
        if match is None:
            return None
        columns.append((name.strip().upper(), _TFORM_DTYPES[match.group(1)]))
    if len({name for name, _ in columns}) != len(columns):
        return None
    dtype = np.dtype(columns)
    rows = values.get("NAXIS2")
    if dtype.itemsize != values.get("NAXIS1") or type(rows) is not int:
        return None
    if len(content) < hdu.data_offset + rows * dtype.itemsize:
        return None
    return np.frombuffer(content, dtype, rows, hdu.data_offset)


def _as_read(column: np.ndarray) -> np.ndarray:
    """A column as :func:`models.io.common.table_column` returns it (floats as float64)."""
    if column.dtype.kind == "f":
        return column.astype(np.float64)
    return column.astype(column.dtype.newbyteorder("="))


def _column(path: Path, hdu: Hdu, name: str) -> np.ndarray:
    """One table column; a missing column or bad data becomes SpectrumReadError."""
    try:
        return table_column(path, hdu, name)
    except KeyError as error:
        raise SpectrumReadError(
            path, f"LAMOST table {hdu_name(hdu) or '(unnamed)'!r} has no {name} column"
        ) from error


def _finish(
    path: Path,
    header: Mapping[str, Any],
    wavelength: np.ndarray,
    flux: np.ndarray,
    ivar: np.ndarray,
    meta: dict[str, Any],
) -> Spectrum:
    """Apply the medium (VACUUM = F would mean air) and validate."""
    if header.get("VACUUM") is False:
        wavelength = vacuum_from_air(wavelength)
        meta["wavelength_medium_original"] = "air"
    return finish_spectrum(path, wavelength, flux, ivar, meta)


def _header_meta(header: Mapping[str, Any], layout: str) -> dict[str, Any]:
    """Meta keys shared by all LAMOST layouts, from the primary header."""
    header = header_values(header, _META_KEYS)
    snr = {}
    for band, keys in _SNR_KEYS.items():
        values = [header_float(header, key) for key in keys]
        values = [value for value in values if value is not None]
        if values:
            snr[band] = values[0]
    obsid = header.get("OBSID")
    return {
        "source": "lamost",
        "format": layout,
        "resolution": "low",
        "object_id": header_text(header, "DESIG"),
        "obsid": int(obsid) if isinstance(obsid, int | float) and obsid > 0 else None,
        "ra": header_float(header, "RA"),
        "dec": header_float(header, "DEC"),
        "redshift": header_float(header, "Z"),
        "redshift_err": header_float(header, "Z_ERR"),
        "pipeline_class": header_text(header, "CLASS"),
        "pipeline_subclass": header_text(header, "SUBCLASS"),
        "snr": snr,
        "pipeline_version": header_text(header, "VERSPIPE"),
        "data_release": header_text(header, "DATA_V"),
        "object_type": header_text(header, "OBJTYPE"),
        "lmjd": header.get("LMJD"),
        "plan_id": header_text(header, "PLANID"),
        "spectrograph_id": header.get("SPID"),
        "fiber_id": header.get("FIBERID"),
        "wavelength_medium_original": "vacuum",
        "wavelength_source": "COEFF0/COEFF1",
    }
