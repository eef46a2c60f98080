"""1D convolutional generator and critic of the O-star spectral GAN.

Usage::

    generator = GanGenerator(latent_dim=64, n_pix=1024, rngs=nnx.Rngs(0))
    flux = generator(z)                        # z (batch, 64) -> (batch, 1024, 1)
    critic = GanCritic(n_channels=2, n_pix=1024, rngs=nnx.Rngs(1))
    score = critic(features)                   # (batch, 1024, 2) -> (batch,)

The generator writes the continuum-normalised flux channel of the stellar features
(flux / continuum - 1) over the whole grid. The critic sees the same two channels the
stellar classifier sees (flux channel and coverage), so a generated spectrum is judged
only where the real spectrum it is compared with has coverage (see ``training.gan``).
Both are all-convolutional along wavelength, so lines are learned as local shapes.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx


class UpBlock(nnx.Module):
    """Nearest-neighbour upsampling by 2 -> Conv1D -> LeakyReLU (no checkerboard artefacts)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, rngs: nnx.Rngs):
        self.conv = nnx.Conv(c_in, c_out, kernel_size=(kernel,), padding="SAME", rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = jnp.repeat(x, 2, axis=1)
        return nnx.leaky_relu(self.conv(x), 0.2)


class GanGenerator(nnx.Module):
    """Latent vector -> continuum-normalised flux channel on the stellar grid.

    Args:
        latent_dim: size of the Gaussian latent vector.
        n_pix: output length (the stellar grid); must be ``base_pix * 2**len(widths)``.
        widths: channels after the dense stem and after each upsampling block but the last.
        kernel: kernel width of the upsampling convolutions.
        out_scale: the output is ``out_scale * tanh(.)``: bounded like the clipped features,
            with room for the deepest O-star lines (Balmer cores reach about -0.4).
    """

    def __init__(
        self,
        latent_dim: int = 64,
        n_pix: int = 1024,
        widths: Sequence[int] = (64, 48, 32, 24, 16, 8),
        kernel: int = 5,
        out_scale: float = 1.0,
        *,
        rngs: nnx.Rngs,
    ):
        n_up = len(widths) - 1
        if n_pix % 2**n_up:
            raise ValueError(f"n_pix={n_pix} is not divisible by 2**{n_up}")
        self.latent_dim = latent_dim
        self.base_pix = n_pix // 2**n_up
        self.widths = tuple(widths)
        self.out_scale = out_scale
        self.stem = nnx.Linear(latent_dim, self.base_pix * widths[0], rngs=rngs)
        pairs = zip(widths[:-1], widths[1:], strict=True)
        self.blocks = nnx.List([UpBlock(c_in, c_out, kernel, rngs) for c_in, c_out in pairs])
        self.out = nnx.Conv(widths[-1], 1, kernel_size=(7,), padding="SAME", rngs=rngs)

    def __call__(self, z: jax.Array) -> jax.Array:
        x = nnx.leaky_relu(self.stem(z), 0.2).reshape(z.shape[0], self.base_pix, self.widths[0])
        for block in self.blocks:
            x = block(x)
        return self.out_scale * jnp.tanh(self.out(x))


def spectral_norm_sigma(kernel: jax.Array, n_iter: int = 5) -> jax.Array:
    """Largest singular value of ``kernel`` (reshaped to (-1, out)) by power iteration.

    Stateless: it starts from a fixed vector on every call (the matrices are small), so the
    critic has no running statistics to carry; the iteration is not differentiated
    (Miyato et al. 2018 treat u and v as constants too).
    """
    matrix = kernel.reshape(-1, kernel.shape[-1])
    u = jnp.ones((matrix.shape[-1],), matrix.dtype) / jnp.sqrt(matrix.shape[-1])
    for _ in range(n_iter):
        v = matrix @ u
        v = v / (jnp.linalg.norm(v) + 1e-12)
        u = matrix.T @ v
        u = u / (jnp.linalg.norm(u) + 1e-12)
    u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
    return v @ matrix @ u


class GanCritic(nnx.Module):
    """Features (flux channel + coverage) -> one realness score per spectrum.

    Strided convolutions halve the wavelength axis at each block; a Dense layer reads the
    flattened map, so the critic knows where lines sit (He II 4686 belongs at 4686 Å).
    No batch normalisation: WGAN-GP's penalty is per example.

    Args:
        n_channels: input channels (2: normalised flux and coverage).
        n_pix: input length.
        widths: output channels of the strided convolutions.
        kernel: their kernel width.
        spectral_norm: divide every layer's kernel by its largest singular value (for the
            hinge and DCGAN losses, which need a Lipschitz bound from somewhere).
    """

    def __init__(
        self,
        n_channels: int = 2,
        n_pix: int = 1024,
        widths: Sequence[int] = (16, 32, 64, 64, 64),
        kernel: int = 5,
        spectral_norm: bool = False,
        *,
        rngs: nnx.Rngs,
    ):
        self.spectral_norm = spectral_norm
        layers = []
        c_in = n_channels
        for width in widths:
            layers.append(
                nnx.Conv(
                    c_in, width, kernel_size=(kernel,), strides=(2,), padding="SAME", rngs=rngs
                )
            )
            c_in = width
        self.convs = nnx.List(layers)
        n_features = c_in * (n_pix // 2 ** len(widths))
        self.out = nnx.Linear(n_features, 1, rngs=rngs)

    def _apply(self, layer: nnx.Module, x: jax.Array) -> jax.Array:
        y = layer(x)
        if not self.spectral_norm:
            return y
        # Both layers are linear in the kernel: conv(x, K / s) + b == (conv(x, K) - b) / s + b.
        bias = layer.bias[...]
        return (y - bias) / spectral_norm_sigma(layer.kernel[...]) + bias

    def __call__(self, x: jax.Array) -> jax.Array:
        for conv in self.convs:
            x = nnx.leaky_relu(self._apply(conv, x), 0.2)
        return self._apply(self.out, x.reshape(x.shape[0], -1))[:, 0]
