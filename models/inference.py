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
from concurrent.futures import Executor
from functools import partial
from pathlib import Path

import numpy as np

from models.bundle import Predictor, load_bundle
from models.prepare import (  # noqa: F401 - preparation_pool is part of this API
    IMAGE_TASKS,
    SPECTRUM_TASKS,
    Prepared,
    preparation_pool,
    prepare,
    prepare_paths,
)

BUNDLES_DIR = Path(
    os.environ.get("SKYSORT_BUNDLES", Path(__file__).resolve().parents[1] / "bundles")
)


def default_bundle(task: str) -> Path:
    return BUNDLES_DIR / task


def load_default_predictors(tasks: Iterable[str] | None = None) -> dict[str, Predictor]:
    """Predictors of the default bundles that exist in ``BUNDLES_DIR`` (all known tasks)."""
    tasks = tasks or (*SPECTRUM_TASKS, *IMAGE_TASKS)
    return {t: load_bundle(default_bundle(t)) for t in tasks if default_bundle(t).is_dir()}


def result_object(prepared: Prepared, predictor: Predictor, probabilities: np.ndarray) -> dict:
    """The ``classify`` JSON object of one prepared input and its probability row."""
    return {
        "file": prepared.file,
        "task": prepared.task,
        "label": predictor.labels[int(np.argmax(probabilities))],
        "probabilities": predictor.label_probabilities(probabilities),
        "model": predictor.bundle_id,
        "warnings": prepared.warnings,
    }


def predict_prepared(prepared: list[Prepared], predictors: dict[str, Predictor]) -> list[dict]:
    """Classify prepared inputs, one batch per task; results keep the input order."""
    results: list[dict | None] = [None] * len(prepared)
    for task, predictor in predictors.items():
        index = [i for i, p in enumerate(prepared) if p.error is None and p.task == task]
        if not index:
            continue
        probabilities = predictor.predict(np.stack([prepared[i].features for i in index]))
        for i, row in zip(index, probabilities, strict=True):
            results[i] = result_object(prepared[i], predictor, row)
    for i, p in enumerate(prepared):
        if results[i] is None:
            results[i] = {"file": p.file, "error": p.error or "not classified"}
    return results


def classify_files(
    paths: Iterable[str | Path],
    predictors: dict[str, Predictor],
    task: str = "auto",
    pool: Executor | None = None,
) -> list[dict]:
    """The ``classify`` JSON object of every path, in order.

    With ``pool`` (see :func:`preparation_pool`), files are read and preprocessed in worker
    processes while this process predicts.
    """
    preprocessors = {name: p.preprocess for name, p in predictors.items()}
    paths = list(paths)
    if pool is None:
        prepared = prepare_paths(paths, preprocessors, task)
    else:
        size = max(1, len(paths) // 16)
        chunks = [paths[start : start + size] for start in range(0, len(paths), size)]
        work = partial(prepare_paths, preprocessors=preprocessors, task=task)
        prepared = [p for part in pool.map(work, chunks) for p in part]
    return predict_prepared(prepared, predictors)
