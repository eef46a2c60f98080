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
        if not self.norm.use_running_average:  # training: the formulation it always had
            return nnx.max_pool(nnx.gelu(self.norm(self.conv(x))), (2,), strides=(2,))
        taps, c_in, _ = self.conv.kernel.shape
        if taps * c_in <= _SUM_TERMS_MAX:
            return self._pooled_by_parity(x)
        return max_pool2(nnx.gelu(self.norm(self.conv(x))))

    def _pooled_by_parity(self, x: jax.Array) -> jax.Array:
        """The same block at inference, for a convolution with few inputs per output.

        The even and odd output positions are computed apart, each as a sum of
        ``kernel * c_in`` shifted, strided input slices times weights, and pooled with
        ``maximum``: XLA fuses it all into one loop over the pooled output. For the first
        block (2 input channels, 7 taps) that is 14 µs per spectrum against 100 µs for
        XLA's convolution followed by the fused BatchNorm + GELU + pooling loop, where
        XLA's CPU backend does badly (timed block by block, README "Benchmarks"; equal
        to float rounding, a few 1e-6 on activations of order 10). Only at inference:
        BatchNorm is then a fixed affine map, applied to each half alike.
        """
        kernel = self.conv.kernel[...]
        taps, c_in, _ = kernel.shape
        half = x.shape[1] // 2
        left = (taps - 1) // 2  # padding="SAME"
        padded = jnp.pad(x, ((0, 0), (left, taps - 1 - left + x.shape[1] % 2), (0, 0)))
        pooled = None
        for parity in (0, 1):
            out = self.conv.bias[...]
            for tap in range(taps):
                rows = padded[:, parity + tap : parity + tap + 2 * half : 2]
                for channel in range(c_in):
                    out = out + rows[..., channel : channel + 1] * kernel[tap, channel]
            out = nnx.gelu(self.norm(out))
            pooled = out if pooled is None else jnp.maximum(pooled, out)
        return pooled


#: above this many taps x input channels a block uses XLA's convolution
_SUM_TERMS_MAX = 16


def max_pool2(x: jax.Array) -> jax.Array:
    """Max-pool by 2 along axis 1 (window 2, stride 2, an odd last element dropped).

    The same values as ``nnx.max_pool(x, (2,), (2,))``, written as the maximum of the
    even and odd samples, which XLA's CPU backend fuses with the GELU before it into one
    loop (``reduce_window`` made GELU + pooling about four times slower). Used at
    inference; training keeps ``nnx.max_pool``, whose gradient at ties (runs of equal
    values, e.g. over masked pixels) differs.
    """
    even = x.shape[1] // 2 * 2
    return jnp.maximum(x[:, 0:even:2], x[:, 1:even:2])


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
