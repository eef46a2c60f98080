"""Ondřejov CCD700 reader: raw 1D IRAF images and the archive's normalised binary tables.

Usage::

    from models.io import ondrejov
    spectrum = ondrejov.read(Path("ua280060.fits"))

- Raw 1D image (primary NAXIS = 1, OBSERVAT = 'ONDREJOV'): linear WCS
  ``lambda = CRVAL1 + (i + 1 - CRPIX1) * CDELT1`` (CD1_1 when CDELT1 is absent; DC-FLAG = 1
  would mean log10). Flux in ADU, no errors (ivar = 1 where finite).
- Normalised table from the archive's DataLink service (empty primary, HDU 1 BINTABLE with
  columns 'spectral' [Angstrom] and 'flux'; DS_IDPUB ivo://asu.cas.cz/...): the continuum-
  normalised flux around H-alpha (6282-6733 A).

Both are AIR wavelengths (the table's TTYPE1 comment says "Air wavelength"; the raw files
come from the same IRAF reduction) and are converted to vacuum with
:func:`models.preprocess.air_to_vacuum`: about +1.81 A at H-alpha.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

from models.io.base import Spectrum, SpectrumReadError
from models.io.common import (
    Hdu,
    column_names,
    finish_spectrum,
    header_float,
    header_kind,
    header_shape,
    header_text,
    image_data,
    is_fits,
    leading_headers,
    load_content,
    open_fits,
    primary_value,
    table_column,
    vacuum_from_air,
)

_ARCHIVE_MARK = "asu.cas.cz"
_SEXAGESIMAL = re.compile(r"[+-]?\d+(:\d+(\.\d*)?){1,2}")
_UNIT_TO_ANGSTROM = {"angstrom": 1.0, "angstroms": 1.0, "a": 1.0, "nm": 10.0, "m": 1e10}


def identify(head: bytes, path: Path | None = None) -> bool:
    """True for Ondřejov raw images (OBSERVAT/TELESCOP) or archive tables (DS_IDPUB)."""
    if not is_fits(head):
        return False
    observatory = str(primary_value(head, "OBSERVAT") or "").strip().upper()
    telescope = str(primary_value(head, "TELESCOP") or "").strip().upper()
    if observatory == "ONDREJOV" or telescope == "ZEISS-2M":
        return True
    headers = leading_headers(head, max_hdus=2)
    return len(headers) > 1 and _is_archive_table(headers[1])


def read(path: Path, content: bytes | None = None) -> Spectrum:
    """Read a raw 1D image or a normalised archive table (see module docstring).

    Args:
        path: the file; used for error messages when ``content`` is given.
        content: the file's (decompressed) bytes when the caller already has them.
    """
    path = Path(path)
    content = load_content(path) if content is None else content
    with open_fits(path, content) as hdus:
        if len(header_shape(hdus[0].header)) == 1:
            return _read_raw(path, hdus[0])
        if len(hdus) > 1 and isinstance(hdus[1], fits.BinTableHDU):
            return _read_table(path, hdus[1])
        shape = " x ".join(map(str, header_shape(hdus[0].header))) or "no data"
    raise SpectrumReadError(
        path,
        f"Ondřejov file with an unrecognised layout (primary HDU: {shape}); expected a 1D "
        "image or a binary table with 'spectral' and 'flux' columns",
    )


def _is_archive_table(header: fits.Header) -> bool:
    """A BINTABLE header with spectral+flux columns published by the Ondřejov VO archive."""
    n_fields = int(header.get("TFIELDS", 0))
    columns = {str(header.get(f"TTYPE{i}", "")).strip().lower() for i in range(1, n_fields + 1)}
    publisher = f"{header.get('DS_IDPUB', '')} {header.get('VOPUB', '')}"
    return (
        header_kind(header) == "bintable"
        and {"spectral", "flux"} <= columns
        and _ARCHIVE_MARK in publisher
    )


def _read_raw(path: Path, primary: Hdu) -> Spectrum:
    """Raw CCD700 1D image with a linear (air) wavelength solution."""
    header = primary.header
    start = header_float(header, "CRVAL1")
    step = header_float(header, "CDELT1") or header_float(header, "CD1_1")
    if start is None or step is None:
        raise SpectrumReadError(
            path, "no spectral axis: 1D image without CRVAL1 and CDELT1/CD1_1 wavelength keywords"
        )
    flux = image_data(path, primary)
    reference_pixel = header_float(header, "CRPIX1")
    reference_pixel = 1.0 if reference_pixel is None else reference_pixel
    pixel = np.arange(flux.size, dtype=np.float64) + 1.0 - reference_pixel
    wavelength_air = start + pixel * step
    if header.get("DC-FLAG") == 1:
        wavelength_air = 10.0**wavelength_air
    meta = {
        "source": "ondrejov",
        "format": "ondrejov_raw_1d",
        "resolution": "high",
        "object_id": header_text(header, "OBJECT"),
        "ra": _sexagesimal(header.get("RA"), hours=True),
        "dec": _sexagesimal(header.get("DEC"), hours=False),
        "date_obs": header_text(header, "DATE-OBS"),
        "flux_unit": header_text(header, "BUNIT"),
        "flux_normalised": False,
        "instrument": header_text(header, "INSTRUME"),
        "wavelength_medium_original": "air",
    }
    ivar = np.where(np.isfinite(flux), 1.0, 0.0)
    return finish_spectrum(path, vacuum_from_air(wavelength_air), flux, ivar, meta)


def _read_table(path: Path, table: fits.BinTableHDU) -> Spectrum:
    """Normalised archive table: columns 'spectral' (air Angstrom) and 'flux'."""
    names = [name.lower() for name in column_names(table)]
    if "spectral" not in names or "flux" not in names:
        raise SpectrumReadError(
            path, f"no spectral axis: table columns are {names}; expected 'spectral' and 'flux'"
        )
    index = names.index("spectral") + 1
    unit = str(table.header.get(f"TUNIT{index}", "Angstrom")).strip().lower()
    if unit not in _UNIT_TO_ANGSTROM:
        raise SpectrumReadError(path, f"unsupported wavelength unit {unit!r}")
    ttype_comment = table.header.comments[f"TTYPE{index}"]
    medium = "vacuum" if "vac" in ttype_comment.lower() else "air"
    wavelength = table_column(path, table, "spectral") * _UNIT_TO_ANGSTROM[unit]
    flux = table_column(path, table, "flux")
    if medium == "air":
        wavelength = vacuum_from_air(wavelength)
    header = table.header
    meta = {
        "source": "ondrejov",
        "format": "ondrejov_normalised_table",
        "resolution": "high",
        "object_id": header_text(header, "OBJECT"),
        "ivo_id": header_text(header, "DS_IDPUB"),
        "ra": header_float(header, "RA"),
        "dec": header_float(header, "DEC"),
        "date_obs": header_text(header, "DATE"),
        "flux_normalised": True,
        "wavelength_medium_original": medium,
    }
    ivar = np.where(np.isfinite(flux), 1.0, 0.0)
    return finish_spectrum(path, wavelength, flux, ivar, meta)


def _sexagesimal(value: Any, *, hours: bool) -> float | None:
    """Degrees from 'HH:MM:SS.s' (hours=True) or '+DD:MM:SS' strings, or plain numbers."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str) or _SEXAGESIMAL.fullmatch(value.strip()) is None:
        return None
    text = value.strip()
    sign = -1.0 if text.startswith("-") else 1.0
    parts = [float(part) for part in text.lstrip("+-").split(":")]
    degrees = sum(part / 60.0**power for power, part in enumerate(parts))
    return sign * degrees * (15.0 if hours else 1.0)
