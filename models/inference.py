"""From input files to the ``classify`` JSON objects shared by the CLI and the service.

Usage::

    predictors = load_default_predictors()            # {"stellar": Predictor, ...}
    for result in classify_files(paths, predictors):  # one dict per input, in order
        print(json.dumps(result))

A file that cannot be read gives ``{"file": ..., "error": ...}`` and the others are still
classified. Features of all readable files are predicted in one batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.bundle import Predictor, load_bundle
from models.io import SpectrumReadError, identify_kind, read_spectrum
from models.preprocess import coverage_fraction

BUNDLES_DIR = Path(
    os.environ.get("SKYSORT_BUNDLES", Path(__file__).resolve().parents[1] / "bundles")
)
SPECTRUM_TASKS = ("stellar",)
IMAGE_TASKS = ()
MIN_COVERAGE = 0.5


def default_bundle(task: str) -> Path:
    return BUNDLES_DIR / task


def load_default_predictors(tasks: Iterable[str] | None = None) -> dict[str, Predictor]:
    """Predictors of the default bundles that exist in ``BUNDLES_DIR`` (all known tasks)."""
    tasks = tasks or (*SPECTRUM_TASKS, *IMAGE_TASKS)
    return {t: load_bundle(default_bundle(t)) for t in tasks if default_bundle(t).is_dir()}


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


def prepare(path: str | Path, predictors: dict[str, Predictor], task: str = "auto") -> Prepared:
    """Read and preprocess one file for its task; errors are captured, not raised."""
    path = Path(path)
    prepared = Prepared(file=str(path))
    try:
        prepared.task = choose_task(path, task)
        if prepared.task not in predictors:
            raise SpectrumReadError(path, f"no model is loaded for task {prepared.task!r}")
        predictor = predictors[prepared.task]
        spectrum = read_spectrum(path)
        prepared.features = predictor.preprocess.apply(spectrum)
        prepared.warnings = spectrum_warnings(spectrum, prepared.features)
    except SpectrumReadError as error:
        prepared.error = str(error)
    except OSError as error:
        prepared.error = f"{path.name}: cannot open ({error.strerror or error})"
    return prepared


def predict_prepared(prepared: list[Prepared], predictors: dict[str, Predictor]) -> list[dict]:
    """Classify prepared inputs, one batch per task; results keep the input order."""
    results: list[dict | None] = [None] * len(prepared)
    for task, predictor in predictors.items():
        index = [i for i, p in enumerate(prepared) if p.error is None and p.task == task]
        if not index:
            continue
        probabilities = predictor.predict(np.stack([prepared[i].features for i in index]))
        for i, row in zip(index, probabilities, strict=True):
            results[i] = {
                "file": prepared[i].file,
                "task": task,
                "label": predictor.labels[int(np.argmax(row))],
                "probabilities": predictor.label_probabilities(row),
                "model": predictor.bundle_id,
                "warnings": prepared[i].warnings,
            }
    for i, p in enumerate(prepared):
        if results[i] is None:
            results[i] = {"file": p.file, "error": p.error or "not classified"}
    return results


def classify_files(
    paths: Iterable[str | Path], predictors: dict[str, Predictor], task: str = "auto"
) -> list[dict]:
    """The ``classify`` JSON object of every path, in order."""
    return predict_prepared([prepare(p, predictors, task) for p in paths], predictors)
