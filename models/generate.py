"""Synthetic O-type spectra from a generator bundle, and their FITS / CSV / JSON forms.

Usage::

    generator = load_generator(default_generator_path())     # compiles at load
    flux = generator.generate(n=100, seed=7)                 # (100, n_pix) float32
    fits_bytes = spectra_to_fits(generator, flux, seed=7)

The flux is continuum-normalised (flux / pseudo-continuum, so 1 is the continuum) on the
stellar grid (vacuum Angstrom, log-uniform, ``generator.wavelength``): the same quantity
the stellar classifier sees, plus 1. Spectrum ``i`` of a seed is the same whatever ``n``
is asked for (its latent vector comes from ``fold_in(key(seed), i)``), so generation is
deterministic and a longer request extends a shorter one.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import os
from importlib import metadata
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.bundle import load_nets, read_card
from models.preprocess import build_preprocess

#: Batch shapes compiled at load; larger requests run in chunks of the largest.
GENERATE_BUCKETS = (8, 64, 256, 1024)
FLUX_UNIT = "continuum-normalised flux (1 = continuum)"
WAVELENGTH_UNIT = "Angstrom (vacuum)"


class GeneratorBundleError(ValueError):
    """A directory that is not a usable generator bundle (names the path and the reason)."""


class SpectrumGenerator:
    """Jitted, batched sampling from one generator bundle.

    Attributes:
        bundle_id: the bundle's id (bundle.json).
        card: the whole model card.
        wavelength: (n_pix,) vacuum Angstrom, the stellar grid.
    """

    def __init__(self, path: str | Path, buckets: tuple[int, ...] = GENERATE_BUCKETS):
        path = Path(path)
        self.card = read_card(path)
        if self.card.get("task") != "gan":
            raise GeneratorBundleError(
                f"{path}: bundle task is {self.card.get('task')!r}, not 'gan'"
            )
        self.bundle_id: str = self.card["bundle_id"]
        self.wavelength = build_preprocess(self.card["preprocess"]).grid
        self.latent_dim = int(self.card["network"]["kwargs"].get("latent_dim", 64))
        self.buckets = tuple(sorted(buckets))
        graphdef, self._params = nnx.split(load_nets(path, self.card)[0])

        def forward(params, seed, index):
            base = jax.random.key(seed)
            z = jax.vmap(
                lambda i: jax.random.normal(jax.random.fold_in(base, i), (self.latent_dim,))
            )(index)
            return 1.0 + nnx.merge(graphdef, params)(z)[..., 0]

        self._forward = jax.jit(forward)
        for size in self.buckets:
            self._run(0, np.arange(size))

    def _run(self, seed: int, index: np.ndarray) -> np.ndarray:
        seed_array = jnp.asarray(seed, jnp.uint32)
        return np.asarray(self._forward(self._params, seed_array, jnp.asarray(index, jnp.int32)))

    def generate(self, n: int, seed: int) -> np.ndarray:
        """``n`` spectra (n, n_pix) float32; the same ``(n, seed)`` gives the same output.

        Args:
            n: number of spectra (>= 1).
            seed: any integer in [0, 2**32); spectrum i depends only on (seed, i).
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
            raise ValueError(f"seed must be an integer, got {seed!r}")
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        largest = self.buckets[-1]
        chunks = []
        for start in range(0, n, largest):
            count = min(largest, n - start)
            size = next(b for b in self.buckets if b >= count)
            index = np.arange(start, start + size)
            chunks.append(self._run(int(seed), index)[:count])
        return np.concatenate(chunks).astype(np.float32)


def load_generator(path: str | Path) -> SpectrumGenerator:
    """Load a generator bundle directory (``bundle.json`` + ``weights.msgpack``)."""
    return SpectrumGenerator(path)


def default_generator_path() -> Path:
    """``bundles/gan`` in the repo, or ``$SKYSORT_BUNDLES/gan`` when that is set."""
    bundles = os.environ.get("SKYSORT_BUNDLES", Path(__file__).resolve().parents[1] / "bundles")
    return Path(bundles) / "gan"


def _software_version() -> str:
    try:
        return f"skysort {metadata.version('skysort')}"
    except metadata.PackageNotFoundError:
        return "skysort (not installed)"


def provenance(gen: SpectrumGenerator, flux: np.ndarray, seed: int) -> dict:
    """What every output format records about where the spectra came from."""
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    return {
        "model": gen.bundle_id,
        "seed": int(seed),
        "n": int(len(flux)),
        "created": created,
        "software": _software_version(),
        "synthetic": True,
        "mk_class": "O",
        "units": {"wavelength": WAVELENGTH_UNIT, "flux": FLUX_UNIT},
    }


def _check_flux(gen: SpectrumGenerator, flux: np.ndarray) -> np.ndarray:
    flux = np.asarray(flux, np.float32)
    if flux.ndim != 2 or flux.shape[1] != gen.wavelength.size:
        raise ValueError(f"flux must be (n, {gen.wavelength.size}), got {flux.shape}")
    return flux


def spectra_to_fits(gen: SpectrumGenerator, flux: np.ndarray, seed: int) -> bytes:
    """A FITS file: primary image FLUX (n, n_pix), image extension WAVELENGTH (n_pix,).

    Provenance goes into the primary header: BUNDLEID, SEED, NSPEC, DATE, SOFTWARE,
    SYNTHETI (True), MKCLASS, BUNIT and the wavelength medium.
    """
    from astropy.io import fits

    flux = _check_flux(gen, flux)
    info = provenance(gen, flux, seed)
    primary = fits.PrimaryHDU(flux)
    header = primary.header
    header["EXTNAME"] = ("FLUX", "generated spectra, one per row")
    header["BUNIT"] = ("", FLUX_UNIT)
    header["OBJECT"] = ("SYNTHETIC O-TYPE", "not an observation")
    header["SYNTHETI"] = (True, "spectra made by a GAN, not observed")
    header["MKCLASS"] = ("O", "class the generator was trained on")
    header["BUNDLEID"] = (info["model"], "generator bundle id")
    header["SEED"] = (info["seed"], "generation seed")
    header["NSPEC"] = (info["n"], "number of spectra")
    header["DATE"] = (info["created"], "UTC creation time")
    header["SOFTWARE"] = (info["software"], "software that wrote the file")
    header["FLUXTYPE"] = ("CONTINUUM-NORMALISED", "flux / pseudo-continuum; 1 = continuum")
    header["AIRORVAC"] = ("vac", "wavelengths are in vacuum")
    wave = fits.ImageHDU(gen.wavelength.astype(np.float64), name="WAVELENGTH")
    wave.header["BUNIT"] = ("Angstrom", "vacuum wavelength of each pixel")
    buffer = io.BytesIO()
    fits.HDUList([primary, wave]).writeto(buffer)
    return buffer.getvalue()


def spectra_to_csv(gen: SpectrumGenerator, flux: np.ndarray, seed: int) -> str:
    """CSV, one row per pixel: ``wavelength,spectrum_0,...``; ``#`` lines carry provenance."""
    flux = _check_flux(gen, flux)
    info = provenance(gen, flux, seed)
    buffer = io.StringIO()
    for key in ("model", "seed", "n", "created", "software", "synthetic", "mk_class"):
        buffer.write(f"# {key}: {info[key]}\n")
    buffer.write(f"# wavelength: {WAVELENGTH_UNIT}; flux: {FLUX_UNIT}\n")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["wavelength", *(f"spectrum_{i}" for i in range(len(flux)))])
    for pixel, wavelength in enumerate(gen.wavelength):
        writer.writerow([f"{wavelength:.4f}", *(f"{value:.5f}" for value in flux[:, pixel])])
    return buffer.getvalue()


def spectra_to_json(gen: SpectrumGenerator, flux: np.ndarray, seed: int) -> dict:
    """JSON-ready dict: provenance plus ``wavelength`` (n_pix,) and ``flux`` (n, n_pix)."""
    flux = _check_flux(gen, flux)
    return {
        **provenance(gen, flux, seed),
        "wavelength": np.round(gen.wavelength, 4).tolist(),
        "flux": np.round(flux.astype(np.float64), 5).tolist(),
    }
