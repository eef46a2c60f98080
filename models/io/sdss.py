"""SDSS reader: DR8+ ``spec-*.fits`` (COADD table) and DR7 ``spSpec-*.fit`` (5 x N image).

Usage::

    from models.io import sdss
    spectrum = sdss.read(Path("spec-4055-55359-0027.fits"))

- spec (SDSS legacy and BOSS): HDU 1 'COADD' table with loglam, flux, ivar, and_mask;
  HDU 2 'SPECOBJ' or 'SPALL' (one row) with CLASS, SUBCLASS, Z, PLUG_RA/PLUG_DEC,
  SN_MEDIAN. Wavelength = 10**loglam.
- spSpec (DR7): primary image rows 0 flux, 1 continuum-subtracted flux, 2 error (0 = no
  data), 3 pixel mask; wavelength = 10**(COEFF0 + COEFF1 * i). Class from SPEC_CLN.

SDSS wavelengths are vacuum. ivar is set to 0 where the AND mask is nonzero, except for the
informational EMLINE bit (30) that DR7 sets on detected emission lines.
"""

from __future__ import annotations

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
    image_data,
    is_fits,
    load_content,
    open_fits,
    primary_value,
    table_column,
)

_TELESCOPE = "SDSS 2.5-M"
_EMLINE_BIT = 1 << 30
_SPEC_CLN = {0: "UNKNOWN", 1: "STAR", 2: "GALAXY", 3: "QSO", 4: "HIZ_QSO", 5: "SKY",
             6: "STAR_LATE", 7: "GAL_EM"}  # fmt: skip
_BANDS = "ugriz"


def identify(head: bytes, path: Path | None = None) -> bool:
    """True for a FITS file whose primary header says TELESCOP = 'SDSS 2.5-M'."""
    if not is_fits(head):
        return False
    return str(primary_value(head, "TELESCOP") or "").strip() == _TELESCOPE


def read(path: Path, content: bytes | None = None) -> Spectrum:
    """Read an SDSS spec or spSpec file (layout chosen from the HDUs).

    Args:
        path: the file; used for error messages when ``content`` is given.
        content: the file's (decompressed) bytes when the caller already has them.
    """
    path = Path(path)
    content = load_content(path) if content is None else content
    with open_fits(path, content) as hdus:
        primary = hdus[0]
        if len(header_shape(primary.header)) == 2:
            return _read_spspec(path, primary)
        if len(hdus) > 1 and isinstance(hdus[1], fits.BinTableHDU):
            columns = {name.lower() for name in column_names(hdus[1])}
            if {"loglam", "flux", "ivar"} <= columns:
                return _read_spec(path, hdus)
        layout = describe_layout([hdu.header for hdu in hdus])
    raise SpectrumReadError(
        path,
        f"SDSS file with an unrecognised HDU layout ({layout}); expected HDU 1 'COADD' table "
        "with loglam/flux/ivar (spec) or a 5 x N primary image (spSpec)",
    )


def _read_spec(path: Path, hdus: fits.HDUList) -> Spectrum:
    """DR8+ spec file: COADD table plus the SPECOBJ/SPALL summary row."""
    coadd = hdus[1]
    loglam = _column(path, coadd, "loglam")
    ivar = _column(path, coadd, "ivar")
    and_mask = _optional_column(path, coadd, "and_mask")
    if and_mask is not None:
        ivar = np.where((and_mask.astype(np.int64) & ~_EMLINE_BIT) != 0, 0.0, ivar)
    header = hdus[0].header
    summary = next((hdu for hdu in hdus[2:] if hdu_name(hdu) in ("SPECOBJ", "SPALL")), None)
    meta = _spec_meta(path, header, summary)
    flux = _column(path, coadd, "flux")
    return finish_spectrum(path, 10.0**loglam, flux, ivar, meta)


_SUMMARY_COLUMNS = ("SPECOBJID", "PLATE", "MJD", "FIBERID", "PLUG_RA", "PLUG_DEC", "Z", "Z_ERR",
                    "CLASS", "SUBCLASS", "SN_MEDIAN", "SN_MEDIAN_ALL", "RUN2D")  # fmt: skip


def _spec_meta(path: Path, header: fits.Header, summary: Hdu | None) -> dict[str, Any]:
    """Meta for a spec file: the SPECOBJ/SPALL row first, the primary header as fallback."""
    row: dict[str, Any] = dict.fromkeys(_SUMMARY_COLUMNS)
    if summary is not None:
        for name in _SUMMARY_COLUMNS:
            column = _optional_column(path, summary, name)
            row[name] = None if column is None else column[0]
    snr = {}
    if row["SN_MEDIAN"] is not None:
        snr = dict(zip(_BANDS, (float(value) for value in row["SN_MEDIAN"]), strict=False))
    if row["SN_MEDIAN_ALL"] is not None:
        snr["all"] = float(row["SN_MEDIAN_ALL"])
    fallbacks = {"PLATE": "PLATEID", "MJD": "MJD", "FIBERID": "FIBERID", "PLUG_RA": "PLUG_RA",
                 "PLUG_DEC": "PLUG_DEC", "RUN2D": "RUN2D"}  # fmt: skip
    for column, keyword in fallbacks.items():
        if row[column] is None:
            row[column] = header.get(keyword)
    numbers = {
        "PLATEID": _int(row["PLATE"]),
        "MJD": _int(row["MJD"]),
        "FIBERID": _int(row["FIBERID"]),
    }
    return {
        "source": "sdss",
        "format": "sdss_spec",
        "resolution": "low",
        "object_id": _text(row["SPECOBJID"]) or _plate_mjd_fiber(numbers, fiber_digits=4),
        "plate": numbers["PLATEID"],
        "mjd": numbers["MJD"],
        "fiber_id": numbers["FIBERID"],
        "ra": _float(row["PLUG_RA"]),
        "dec": _float(row["PLUG_DEC"]),
        "redshift": _float(row["Z"]),
        "redshift_err": _float(row["Z_ERR"]),
        "pipeline_class": _text(row["CLASS"]),
        "pipeline_subclass": _text(row["SUBCLASS"]),
        "snr": snr,
        "pipeline_version": _text(row["RUN2D"]),
        "summary_hdu": None if summary is None else hdu_name(summary),
        "wavelength_medium_original": "vacuum",
    }


def _read_spspec(path: Path, primary: Hdu) -> Spectrum:
    """DR7 spSpec: rows flux, continuum-subtracted, error, mask (+ one more)."""
    n_rows, n_pix = header_shape(primary.header)
    if n_rows < 4:
        raise SpectrumReadError(
            path, f"SDSS spSpec image has {n_rows} rows; expected flux, ..., error, mask"
        )
    header = primary.header
    coeff0, coeff1 = header_float(header, "COEFF0"), header_float(header, "COEFF1")
    if coeff0 is None or coeff1 is None:
        raise SpectrumReadError(path, "no spectral axis: spSpec header lacks COEFF0/COEFF1")
    rows = image_data(path, primary)
    error_row = rows[2]
    mask = np.rint(rows[3]).astype(np.int64) & ~_EMLINE_BIT
    usable = (error_row > 0) & (mask == 0)
    ivar = np.where(usable, 1.0 / np.where(usable, error_row, 1.0) ** 2, 0.0)
    wavelength = 10.0 ** (coeff0 + coeff1 * np.arange(n_pix, dtype=np.float64))
    spec_cln = header.get("SPEC_CLN")
    meta = {
        "source": "sdss",
        "format": "sdss_spspec",
        "resolution": "low",
        "object_id": _plate_mjd_fiber(header, fiber_digits=3),
        "plate": header.get("PLATEID"),
        "mjd": header.get("MJD"),
        "fiber_id": header.get("FIBERID"),
        "ra": header_float(header, "RAOBJ"),
        "dec": header_float(header, "DECOBJ"),
        "redshift": header_float(header, "Z"),
        "redshift_err": header_float(header, "Z_ERR"),
        "pipeline_class": _SPEC_CLN.get(spec_cln) if isinstance(spec_cln, int) else None,
        "spec_cln": spec_cln,
        "object_type": header_text(header, "OBJTYPE"),
        "snr": {
            band: header_float(header, f"SN_{band.upper()}")
            for band in "gri"
            if header_float(header, f"SN_{band.upper()}") is not None
        },  # fmt: skip
        "pipeline_version": header_text(header, "VERS_1D"),
        "wavelength_medium_original": "vacuum",
        "wavelength_source": "COEFF0/COEFF1",
    }
    return finish_spectrum(path, wavelength, rows[0], ivar, meta)


def _column(path: Path, hdu: Hdu, name: str) -> np.ndarray:
    """A required table column; problems become SpectrumReadError."""
    try:
        return table_column(path, hdu, name)
    except KeyError as error:
        raise SpectrumReadError(
            path, f"SDSS table {hdu_name(hdu)!r} has no {name} column"
        ) from error


def _optional_column(path: Path, hdu: Hdu, name: str) -> np.ndarray | None:
    """A column that may be absent (returns None then)."""
    names = {column.upper() for column in column_names(hdu)}
    if name.upper() not in names:
        return None
    return _column(path, hdu, name)


def _plate_mjd_fiber(numbers: dict[str, Any], fiber_digits: int) -> str | None:
    """'PPPP-MMMMM-FFF(F)' as in the file names, or None when a number is missing."""
    values = [numbers.get(key) for key in ("PLATEID", "MJD", "FIBERID")]
    if not all(isinstance(value, int) for value in values):
        return None
    plate, mjd, fiber = values
    return f"{plate:04d}-{mjd:05d}-{fiber:0{fiber_digits}d}"


def _text(value: Any) -> str | None:
    """Stripped string or None for empty values."""
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def _float(value: Any) -> float | None:
    """float(value), or None for None and non-numeric values."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        return None
    return float(value)


def _int(value: Any) -> int | None:
    """int(value), or None for None and non-integer values."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        return None
    return int(value)
