"""Reading and preprocessing of one input for its task, without JAX.

Usage: ``prepared = prepare(path, {"stellar": StellarPreprocess()})``.

Kept apart from :mod:`models.inference` so that worker processes which only read and
preprocess files never import JAX.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.io import SpectrumReadError, identify_kind, read_spectrum
from models.preprocess import coverage_fraction

SPECTRUM_TASKS = ("stellar",)
IMAGE_TASKS = ()
MIN_COVERAGE = 0.5


@dataclass
class Prepared:
    """One input after reading and preprocessing, or the reason it failed."""

    file: str
    task: str | None = None
    features: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None


def choose_task(path: Path, requested: str) -> str:
    """The task for a file: ``requested`` unless it is ``auto``, then by content."""
    if requested != "auto":
        return requested
    kind = identify_kind(path)
    if kind == "spectrum":
        return SPECTRUM_TASKS[0]
    if kind == "image" and IMAGE_TASKS:
        return IMAGE_TASKS[0]
    if kind == "image":
        raise SpectrumReadError(path, "this is an image; no image model is installed")
    raise SpectrumReadError(path, "not a recognised spectrum or image file")


def spectrum_warnings(spectrum, features: np.ndarray) -> list[str]:
    """Caveats about a spectrum that was read and preprocessed without error."""
    warnings = []
    pipeline_class = str(spectrum.meta.get("pipeline_class", "")).strip().upper()
    if pipeline_class and pipeline_class not in ("STAR", ""):
        warnings.append(
            f"the file's pipeline class is {pipeline_class}; the stellar model assumes a star"
        )
    redshift = spectrum.meta.get("redshift")
    if redshift is not None and abs(redshift) >= 0.01:
        warnings.append(f"redshift {redshift:.3f} is not stellar; wavelengths were not shifted")
    covered = coverage_fraction(features)
    if covered < MIN_COVERAGE:
        warnings.append(
            f"the spectrum covers {covered:.0%} of the model's 3700-9100 Å grid; "
            "the class is uncertain"
        )
    return warnings


def prepare(path: str | Path, preprocessors: dict, task: str = "auto") -> Prepared:
    """Read and preprocess one file for its task; errors are captured, not raised.

    Args:
        path: the input file.
        preprocessors: task -> preprocessing object (``Predictor.preprocess``); small and
            picklable, so that worker processes can prepare files too.
        task: ``auto`` (by content) or a task name.
    """
    path = Path(path)
    prepared = Prepared(file=str(path))
    try:
        prepared.task = choose_task(path, task)
        if prepared.task not in preprocessors:
            raise SpectrumReadError(path, f"no model is loaded for task {prepared.task!r}")
        spectrum = read_spectrum(path)
        prepared.features = preprocessors[prepared.task].apply(spectrum)
        prepared.warnings = spectrum_warnings(spectrum, prepared.features)
    except SpectrumReadError as error:
        prepared.error = str(error)
    except OSError as error:
        prepared.error = f"{path.name}: cannot open ({error.strerror or error})"
    return prepared
