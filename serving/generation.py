"""The GAN behind POST /generate_spectra, loaded only where its module and bundle exist.

Usage::

    generator = load_default_generator()           # None without models.generate or bundle
    body = render_spectra(generator, n=10, seed=1, fmt="json")   # dict, or FITS bytes

The generator interface (``models.generate``) belongs to the GAN task; this module only
adapts it to HTTP answers and names the model version in every answer.
"""

from __future__ import annotations

import importlib
import logging
from typing import Any

logger = logging.getLogger("skysort.service")


class GenerationError(ValueError):
    """A generation request that the generator refused (a user error)."""


def _generate_module() -> Any | None:
    try:
        return importlib.import_module("models.generate")
    except ModuleNotFoundError as error:
        if error.name != "models.generate":
            raise  # a missing dependency of the module is a deployment fault, not absence
        return None


def load_default_generator() -> Any | None:
    """The default :class:`models.generate.SpectrumGenerator`, or None when there is none."""
    module = _generate_module()
    if module is None:
        logger.info("no models.generate module; /generate_spectra answers 503")
        return None
    path = module.default_generator_path()
    if not path.is_dir():
        logger.info("no gan bundle", extra={"bundle": str(path)})
        return None
    return module.load_generator(path)


def render_spectra(generator: Any, n: int, seed: int, fmt: str) -> dict | bytes:
    """``n`` spectra from ``seed`` as a JSON-ready dict (with ``model``) or FITS bytes."""
    module = _generate_module()
    try:
        flux = generator.generate(n, seed)
    except ValueError as error:
        raise GenerationError(str(error)) from error
    if fmt == "fits":
        return module.spectra_to_fits(generator, flux, seed)
    body = module.spectra_to_json(generator, flux, seed)
    return {**body, "model": generator.bundle_id}
