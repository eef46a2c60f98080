"""Flax NNX networks, built by name so that a bundle can record and rebuild them.

Usage: ``net = build_net("spectrum_cnn", {"n_channels": 3, "n_classes": 7}, seed=0)``.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from models.nets.cnn1d import SpectrumCNN
from models.nets.cnn2d import GalaxyCNN
from models.nets.gan import GanCritic, GanGenerator

NETS: dict[str, type[nnx.Module]] = {
    "spectrum_cnn": SpectrumCNN,
    "galaxy_cnn": GalaxyCNN,
    "gan_generator": GanGenerator,
    "gan_critic": GanCritic,
}


def build_net(name: str, kwargs: dict[str, Any], seed: int = 0) -> nnx.Module:
    """Instantiate the registered network ``name`` with keyword arguments ``kwargs``."""
    if name not in NETS:
        raise KeyError(f"unknown network {name!r}; known: {sorted(NETS)}")
    return NETS[name](**kwargs, rngs=nnx.Rngs(seed))
