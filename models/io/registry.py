"""Pick a reader by file content: ``read_spectrum(path)`` and ``identify_kind(path)``.

Usage::

    from models.io import read_spectrum, identify_kind
    identify_kind("x.fits.gz")        # "spectrum", "image" or "unknown"
    spectrum = read_spectrum("x.fits.gz")

The file is read once; gzip (magic 1f 8b) is undone for every format. Each reader module
gets the first bytes (``identify(head, path)``, cheap: magic numbers and header cards) and,
when it claims the file, the whole decompressed content (``read(path, content=...)``).
Every failure is a :class:`SpectrumReadError` naming the file and the reason.
"""

from __future__ import annotations

from pathlib import Path

from astropy.io import fits

from models.io import lamost, ondrejov, sdss, text
from models.io.base import Spectrum, SpectrumReadError, reader_faults_as
from models.io.common import (
    HEAD_BYTES,
    describe_layout,
    header_kind,
    header_shape,
    image_format,
    is_fits,
    leading_headers,
    load_content,
    open_fits,
)

#: Reader modules in the order they are asked; the first whose identify() is True reads.
READERS = (lamost, sdss, ondrejov, text)
_FITS_READERS = (lamost, sdss, ondrejov)
_MIN_IMAGE_SIDE = 16


def read_spectrum(path: str | Path, data: bytes | None = None) -> Spectrum:
    """Read a spectrum (LAMOST, SDSS, Ondřejov FITS, or a text file), plain or gzipped.

    ``data``: the file's bytes when they are already in memory (an upload); ``path`` then
    only names the file in messages.

    Raises:
        SpectrumReadError: unreadable, empty, truncated or unrecognised content, an image,
            or a spectrum without usable pixels; the message names the file and the reason.
    """
    path = Path(path)
    with reader_faults_as(SpectrumReadError, path):
        return _read_spectrum(path, data)


def _read_spectrum(path: Path, data: bytes | None) -> Spectrum:
    content = load_content(path, data)
    head = content[:HEAD_BYTES]
    picture = image_format(head)
    if picture is not None:
        raise SpectrumReadError(path, f"this is a {picture} image, not a spectrum")
    for reader in READERS:
        if reader.identify(head, path):
            return reader.read(path, content=content)
    raise SpectrumReadError(path, _unrecognised_reason(path, content))


def identify_kind(path: str | Path, data: bytes | None = None) -> str:
    """Say what a file holds: ``"spectrum"``, ``"image"`` or ``"unknown"``.

    "image": JPEG/PNG magic bytes, or FITS whose first data HDU is a 2D image with both axes
    >= 16 pixels (or a cube of 1, 3 or 4 such planes). "spectrum": a FITS layout one of
    the spectrum readers claims, or text whose first data line has 2-3 numbers.
    Only the first bytes are inspected; a "spectrum" can still fail to read. ``data`` as
    for :func:`read_spectrum`.

    Raises:
        SpectrumReadError: the file cannot be read at all (missing, empty, corrupt gzip).
    """
    path = Path(path)
    with reader_faults_as(SpectrumReadError, path):
        return _identify_kind(path, data)


def _identify_kind(path: Path, data: bytes | None) -> str:
    head = load_content(path, data)[:HEAD_BYTES]
    if image_format(head) is not None:
        return "image"
    if is_fits(head):
        if _fits_image_shape(leading_headers(head)) is not None:
            return "image"
        claimed = any(reader.identify(head, path) for reader in _FITS_READERS)
        return "spectrum" if claimed else "unknown"
    if text.identify(head, path) and text.looks_numeric(head):
        return "spectrum"
    return "unknown"


def _fits_image_shape(headers: list[fits.Header]) -> tuple[int, ...] | None:
    """Shape of the first data HDU when it is a picture (2D, or 1/3/4 planes), else None."""
    first = next((header for header in headers if header_shape(header)), None)
    if first is None or header_kind(first) != "image":
        return None
    shape = header_shape(first)
    planes_ok = len(shape) == 2 or (len(shape) == 3 and shape[0] in (1, 3, 4))
    if planes_ok and min(shape[-2:]) >= _MIN_IMAGE_SIDE:
        return shape
    return None


def _unrecognised_reason(path: Path, content: bytes) -> str:
    """Why no reader claimed the content, in words (SpectrumReadError for a broken FITS)."""
    if not is_fits(content):
        return "not a FITS file or a text spectrum (unrecognised binary content)"
    with open_fits(path, content) as hdus:
        headers = [hdu.header for hdu in hdus]
    shape = _fits_image_shape(headers)
    if shape is not None:
        return f"FITS image of shape {' x '.join(map(str, shape))}, not a spectrum"
    telescope = str(headers[0].get("TELESCOP", "")).strip() or "none"
    layout = describe_layout(headers)
    return (
        f"FITS file with no recognised spectrum layout (TELESCOP {telescope!r}; HDUs: {layout});"
        " supported: LAMOST, SDSS, Ondřejov CCD700"
    )
