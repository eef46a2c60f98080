"""Helpers shared by the command modules of :mod:`skysort.cli`."""

from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # importing the training loop pulls in JAX; keep `skysort --help` fast
    from training.loop import TrainConfig


def train_options(train: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """``train`` with the ``skysort train`` options that every classifier shares applied:
    ``--epochs`` (when given), ``--seed`` and ``--batch-size``."""
    return dataclasses.replace(
        train, epochs=args.epochs or train.epochs, seed=args.seed, batch_size=args.batch_size
    )
