"""The 1D CNN's inference formulations compute the textbook block: conv, BN, GELU, pool."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.bundle import load_bundle, load_nets
from models.nets.cnn1d import ConvBlock, SpectrumCNN, max_pool2
from models.prepare import prepare

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "stellar"


def _reference(net: SpectrumCNN, x: jax.Array) -> jax.Array:
    """The network in evaluation mode, block by block as it is trained."""
    for block in net.blocks:
        x = nnx.max_pool(nnx.gelu(block.norm(block.conv(x))), (2,), strides=(2,))
    pooled = x.reshape(x.shape[0], -1)
    return net.out(nnx.gelu(net.hidden(pooled)))


def _with_running_stats(net: SpectrumCNN, seed: int) -> SpectrumCNN:
    """Random BatchNorm statistics and scales (some negative), as a trained net has."""
    rng = np.random.default_rng(seed)
    for block in net.blocks:
        n = block.norm.num_features
        block.norm.mean[...] = jnp.asarray(rng.normal(0, 0.5, n), jnp.float32)
        block.norm.var[...] = jnp.asarray(rng.uniform(0.2, 3.0, n), jnp.float32)
        block.norm.scale[...] = jnp.asarray(rng.normal(0, 1.5, n), jnp.float32)
        block.norm.bias[...] = jnp.asarray(rng.normal(0, 0.5, n), jnp.float32)
    net.eval()
    return net


@pytest.mark.parametrize(
    ("n_pix", "n_channels", "kernels"),
    [(1024, 2, (7, 5, 5)), (140, 1, (7, 5, 3)), (141, 2, (7, 3, 3)), (64, 3, (5, 5, 5))],
)
def test_inference_blocks_match_the_trained_formulation(n_pix, n_channels, kernels):
    net = SpectrumCNN(
        n_channels, 4, widths=(8, 16, 8), kernels=kernels, n_pix=n_pix, rngs=nnx.Rngs(1)
    )
    net = _with_running_stats(net, seed=n_pix)
    x = jnp.asarray(np.random.default_rng(2).normal(0, 2, (6, n_pix, n_channels)), jnp.float32)
    fast = jax.jit(lambda v: net(v))(x)
    reference = jax.jit(lambda v: _reference(net, v))(x)
    assert fast.shape == (6, 4)
    np.testing.assert_allclose(fast, reference, rtol=1e-5, atol=2e-5)
    # the first block (taps x channels <= 16) takes the summed-slices path and agrees too
    block = net.blocks[0]
    assert kernels[0] * n_channels <= 16
    direct = max_pool2(nnx.gelu(block.norm(block.conv(x))))
    np.testing.assert_allclose(block._pooled_by_parity(x), direct, rtol=1e-5, atol=2e-5)


def test_max_pool2_is_max_pool_with_an_odd_tail_dropped():
    x = jnp.asarray(np.random.default_rng(0).normal(size=(3, 9, 4)), jnp.float32)
    np.testing.assert_array_equal(max_pool2(x), nnx.max_pool(x, (2,), strides=(2,)))
    assert max_pool2(x).shape == (3, 4, 4)


def test_training_mode_uses_batch_statistics():
    """In training, BatchNorm normalises by the batch, not the running statistics."""
    block = ConvBlock(2, 4, 7, 0.9, nnx.Rngs(0))
    x = jnp.asarray(np.random.default_rng(0).normal(3, 2, (8, 32, 2)), jnp.float32)
    block.train()
    trained = block(x)
    block.eval()
    evaluated = block(x)
    assert not np.allclose(trained, evaluated, atol=1e-3)


def test_default_bundle_on_real_spectra(data_dir):
    """The served bundle's probabilities equal those of the trained formulation."""
    predictor = load_bundle(BUNDLE, buckets=(8,))
    paths = sorted((data_dir / "lamost").rglob("*.fits"))[:8]
    features = np.stack([prepare(p, {"stellar": predictor.preprocess}).features for p in paths])
    served = predictor.predict(features)
    net = load_nets(BUNDLE)[0]
    reference = jax.nn.softmax(_reference(net, jnp.asarray(features)))
    np.testing.assert_allclose(served, reference, atol=1e-5)
    assert served.max(axis=1).min() > 0.2
