"""GalaxyCNN: shapes, BatchNorm momentum, and exact invariance of 8-view test-time averaging."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.image_preprocess import GalaxyPreprocess
from models.io.image import read_image
from models.nets.cnn2d import GalaxyCNN, dihedral_views

ELLIPTICAL = "galaxy/images/587722981742215240.jpeg"


@pytest.fixture(scope="module")
def galaxy(data_dir):
    features = GalaxyPreprocess(size=32).apply(read_image(data_dir / ELLIPTICAL))
    return jnp.asarray(features[None])


@pytest.mark.parametrize("stem_stride", [1, 2])
def test_logits_shape_and_momentum(galaxy, stem_stride):
    net = GalaxyCNN(3, 2, widths=(8, 16), stem_stride=stem_stride, rngs=nnx.Rngs(0))
    assert net(jnp.concatenate([galaxy, galaxy])).shape == (2, 2)
    norms = [m for _, m in nnx.iter_graph(net) if isinstance(m, nnx.BatchNorm)]
    assert norms and all(m.momentum == 0.9 for m in norms)


def test_eight_views_make_predictions_rotation_and_mirror_invariant(galaxy):
    net = GalaxyCNN(3, 2, widths=(8, 16), test_views=8, rngs=nnx.Rngs(1))
    net.eval()
    reference = np.asarray(net(galaxy))
    for view in dihedral_views(galaxy):
        assert np.allclose(net(view), reference, atol=1e-5)
    net.test_views = 1
    plain = [np.asarray(net(view)) for view in dihedral_views(galaxy)]
    assert max(np.abs(p - plain[0]).max() for p in plain) > 1e-4  # not invariant by itself


def test_views_are_distinct_and_validated(galaxy):
    views = dihedral_views(galaxy)
    assert len(views) == 8 and len(dihedral_views(galaxy, 2)) == 2
    flat = {np.asarray(v).tobytes() for v in views}
    assert len(flat) == 8
    with pytest.raises(ValueError, match="test_views"):
        GalaxyCNN(3, 2, test_views=9, rngs=nnx.Rngs(0))
    assert jax.tree.leaves(nnx.state(GalaxyCNN(3, 2, rngs=nnx.Rngs(0)), nnx.Param))
