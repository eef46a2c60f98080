"""Spectrum record and the one error type every reader raises.

Usage: ``Spectrum(wavelength=..., flux=..., ivar=..., meta={...})``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ReadError(ValueError):
    """An input file could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path | None, reason: str):
        self.path = str(path) if path is not None else "<input>"
        self.reason = reason
        super().__init__(f"{Path(self.path).name}: {reason}")


class SpectrumReadError(ReadError):
    """An input could not be read as a spectrum.

    The message always names the file and the reason, e.g.
    ``"spec-1.fits: truncated FITS file (expected 92160 bytes, got 4000)"``.
    """


class ImageReadError(ReadError):
    """An input could not be read as a galaxy image."""


@dataclass
class Spectrum:
    """One 1D spectrum in vacuum wavelengths.

    Attributes:
        wavelength: vacuum wavelength in Angstrom, strictly increasing, float64.
        flux: flux in the source's units (relative is fine), float64, same length.
        ivar: inverse variance of ``flux``; 0 marks a pixel to ignore. When the source has
            no errors it is 1 for good pixels and 0 for masked ones.
        meta: source (``"lamost"``, ``"sdss"``, ``"ondrejov"``, ``"pickles"``, ``"jhc"``,
            ``"text"``), object_id, ra, dec, redshift, pipeline_class, pipeline_subclass,
            snr, plus reader-specific keys. Missing values are absent, not None.
    """

    wavelength: np.ndarray
    flux: np.ndarray
    ivar: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def good(self) -> np.ndarray:
        """Boolean mask of usable pixels (finite flux, positive ivar)."""
        return np.isfinite(self.flux) & np.isfinite(self.ivar) & (self.ivar > 0)


@contextmanager
def reader_faults_as(error_type: type[ReadError], path: str | Path | None) -> Iterator[None]:
    """Turn an unexpected exception while parsing untrusted bytes into ``error_type``.

    Corrupt headers can make astropy or Pillow fail deep inside with KeyError, TypeError,
    ...; for the user that is still "this file cannot be read", and one such file must not
    stop a batch. Usage: ``with reader_faults_as(SpectrumReadError, path): ...``.
    """
    try:
        yield
    except (ReadError, MemoryError):
        raise
    except Exception as error:  # noqa: BLE001 - the boundary of parsing untrusted content
        reason = f"corrupt or unsupported content (the reader failed with {type(error).__name__}"
        lines = str(error).strip().splitlines()
        reason += f": {lines[0][:120]})" if lines else ")"
        raise error_type(path, reason) from error
