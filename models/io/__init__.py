"""Readers chosen by content: ``read_spectrum(path)`` returns a :class:`Spectrum`.

Usage::

    from models.io import read_spectrum, SpectrumReadError
    spectrum = read_spectrum("spec-55862-B6212_sp06-005.fits")

Each reader module exposes ``identify(head: bytes, path: Path) -> bool`` (cheap, from the
first bytes and, for FITS, the headers) and ``read(path: Path) -> Spectrum``. The registry
below asks them in order; the file name is never used to choose.
"""

from models.io.base import Spectrum, SpectrumReadError
from models.io.registry import identify_kind, read_spectrum

__all__ = ["Spectrum", "SpectrumReadError", "identify_kind", "read_spectrum"]
