"""1D convolutional classifier over wavelength.

Usage: ``net = SpectrumCNN(n_channels=3, n_classes=7, rngs=nnx.Rngs(0))``; ``net(x)`` with
``x`` of shape (batch, n_pix, n_channels) returns logits (batch, n_classes).

Every convolution slides along the wavelength axis (kernel widths of 5–7 pixels, i.e. a few
hundred km/s, the width of stellar absorption lines at R~1800), so the network sees line
shapes and their neighbourhoods, unlike a Dense stack or a convolution over an axis of one.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class ConvBlock(nnx.Module):
    """Conv1D -> BatchNorm -> GELU -> max-pool by 2."""

    def __init__(self, c_in: int, c_out: int, kernel: int, momentum: float, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, kernel_size=(kernel,), padding="SAME", rngs=rngs)
        self.norm = nnx.BatchNorm(c_out, momentum=momentum, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = nnx.gelu(self.norm(self.conv(x)))
        return nnx.max_pool(x, window_shape=(2,), strides=(2,))


class SpectrumCNN(nnx.Module):
    """Stack of ConvBlocks, then a Dense head over the flattened (position-aware) features.

    Spectral type depends on which lines sit at which wavelengths, so the default head
    flattens the pooled feature map instead of averaging it over wavelength (``head=
    "global"`` pools mean+max over wavelength instead: position-free, fewer weights).

    Args:
        n_channels: input feature channels (normalised flux channels + coverage).
        n_classes: output classes.
        widths: output channels of each ConvBlock; each halves the wavelength axis.
        kernels: kernel width of each ConvBlock (same length as ``widths``).
        hidden: units of the Dense layer before the output.
        dropout: dropout rate before the output layer (training only).
        bn_momentum: BatchNorm running-average momentum; 0.9 because our epochs are short.
        n_pix: length of the input along wavelength (needed by the flatten head).
        head: ``"flatten"`` or ``"global"``.
    """

    def __init__(
        self,
        n_channels: int,
        n_classes: int,
        widths: Sequence[int] = (8, 16, 32, 64, 96),
        kernels: Sequence[int] = (7, 5, 5, 5, 3),
        hidden: int = 64,
        dropout: float = 0.2,
        bn_momentum: float = 0.9,
        n_pix: int = 1024,
        head: str = "flatten",
        *,
        rngs: nnx.Rngs,
    ):
        if len(widths) != len(kernels):
            raise ValueError("widths and kernels must have the same length")
        c_in = n_channels
        blocks = []
        for width, kernel in zip(widths, kernels, strict=True):
            blocks.append(ConvBlock(c_in, width, kernel, bn_momentum, rngs))
            c_in = width
        self.blocks = nnx.List(blocks)
        if head not in ("flatten", "global"):
            raise ValueError(f"unknown head {head!r}")
        self.head = head
        n_features = c_in * (n_pix // 2 ** len(widths)) if head == "flatten" else 2 * c_in
        self.hidden = nnx.Linear(n_features, hidden, rngs=rngs)
        self.dropout = nnx.Dropout(dropout, rngs=rngs)
        self.out = nnx.Linear(hidden, n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for block in self.blocks:
            x = block(x)
        if self.head == "flatten":
            pooled = x.reshape(x.shape[0], -1)
        else:
            pooled = jnp.concatenate([x.mean(axis=1), x.max(axis=1)], axis=-1)
        return self.out(self.dropout(nnx.gelu(self.hidden(pooled))))
