"""GalaxyPreprocess on real SDSS cutouts: size measurement, crop, normalisation, round trip."""

from pathlib import Path

import numpy as np
import pytest

from models.image_preprocess import GalaxyPreprocess, galaxy_radius, sky_level
from models.io.image import read_image
from training.galaxy_data import load_manifest

ELLIPTICAL = "galaxy/images/587722981742215240.jpeg"
SPIRAL = "galaxy/images/587722983354204326.jpeg"  # GZ1 anticlockwise spiral
SHARED = Path(__file__).resolve().parents[3] / "shared/data/galaxy_zoo1_sdss"


@pytest.fixture
def elliptical(data_dir):
    return read_image(data_dir / ELLIPTICAL)


def _light(image):
    return (image - sky_level(image)).mean(axis=-1)


def test_features_shape_range_and_colour(elliptical):
    spec = GalaxyPreprocess(size=64)
    features = spec.apply(elliptical)
    assert features.shape == (64, 64, 3) and features.dtype == np.float32
    assert features.max() <= spec.clip and features.min() >= -spec.clip
    centre = features[28:36, 28:36].mean(axis=(0, 1))
    corner = features[:6, :6].mean(axis=(0, 1))
    assert centre.mean() > 0.8 and abs(corner.mean()) < 0.1  # galaxy at the centre, sky ~0
    assert centre[0] > centre[2]  # one scale for all bands keeps the red colour


def test_radius_is_local_and_scales_with_the_image(elliptical):
    """Cutting the frame down leaves the radius; halving the pixels halves it."""
    radius = galaxy_radius(_light(elliptical))
    assert 15 < radius < 60
    inner = elliptical[40:-40, 40:-40]
    assert galaxy_radius(_light(inner)) == pytest.approx(radius, abs=1.0)
    half = elliptical[::2, ::2]
    assert galaxy_radius(_light(half)) == pytest.approx(radius / 2, rel=0.15)


def test_crop_follows_galaxy_size(elliptical):
    """The same galaxy at half the pixel scale gives (nearly) the same features."""
    spec = GalaxyPreprocess()
    full = spec.apply(elliptical)
    from PIL import Image

    small = (
        np.asarray(
            Image.fromarray(np.round(elliptical * 255).astype(np.uint8)).resize((116, 116))
        ).astype(np.float32)
        / 255.0
    )
    assert spec.crop_half_width(_light(small)) == pytest.approx(
        spec.crop_half_width(_light(elliptical)) / 2, rel=0.15
    )
    assert np.abs(spec.apply(small) - full).mean() < 0.1


def test_repo_copies_preprocess_like_the_original_cutouts(data_dir):
    """The repo's 231 px copies give the features of the 423 px originals (when present).

    The preprocessing analyses the central 231 pixels only, so the two differ by the JPEG
    re-encoding alone: 0 for most of the 30 unit-test images, 1.5e-4 at most.
    """
    if not SHARED.is_dir():
        pytest.skip("original cutouts not present")
    spec = GalaxyPreprocess()
    rows = load_manifest(data_dir / "galaxy" / "tiny_test_subset.csv")
    differences = []
    for row in rows:
        original = spec.apply(read_image(SHARED / row.file))
        differences.append(
            np.abs(original - spec.apply(read_image(data_dir / "galaxy" / row.file)))
        )
    assert np.median([d.mean() for d in differences]) == 0.0
    assert max(d.mean() for d in differences) < 1e-3
    assert read_image(SHARED / rows[0].file).shape == (423, 423, 3)


def test_window_ignores_what_lies_outside_it(elliptical):
    """Brighter sky beyond the central window changes nothing; inside it, it does."""
    brighter = elliptical.copy()
    border = np.ones(elliptical.shape[:2], bool)
    border[15:-15, 15:-15] = False  # the 15-pixel border of the 231-pixel image
    brighter[border] += 0.3
    narrow, full = GalaxyPreprocess(window=201), GalaxyPreprocess(window=231)
    assert np.array_equal(narrow.apply(brighter), narrow.apply(elliptical))
    assert not np.array_equal(full.apply(brighter), full.apply(elliptical))


def test_dict_round_trip_and_bad_input(elliptical):
    spec = GalaxyPreprocess(size=48, crop_factor=2.5)
    params = spec.to_dict()
    assert params["name"] == "galaxy"
    params.pop("name")
    assert GalaxyPreprocess(**params) == spec
    assert spec.apply(elliptical).shape == (48, 48, 3)
    with pytest.raises(ValueError, match="expected an"):
        spec.apply(elliptical[..., 0])
