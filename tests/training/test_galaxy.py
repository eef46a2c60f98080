"""Galaxy task: manifest split, augmentation, a short training run, bundle round trip, report."""

import json
from dataclasses import replace
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models.image_preprocess import GalaxyPreprocess
from training.galaxy import (
    AugmentConfig,
    GalaxyTrainConfig,
    evaluate_galaxy,
    load_features,
    make_batch_augment,
    train_galaxy,
    warp_images,
)
from training.galaxy_data import (
    DEFAULT_MANIFEST,
    assign_splits,
    load_manifest,
    rows_in,
    write_manifest,
)
from training.loop import TrainConfig

SHARED_LABELS = Path(__file__).resolve().parents[3] / "shared/data/galaxy_zoo1_sdss/labels.csv"


@pytest.fixture(scope="module")
def tiny_rows(data_dir):
    """The 30-image unit-test subset (13 elliptical, 17 spiral); every third row is ``val``."""
    rows = load_manifest(data_dir / "galaxy" / "tiny_test_subset.csv")
    assert {r.split for r in rows} == {"all"}
    return [replace(r, split="val" if i % 3 == 0 else "train") for i, r in enumerate(rows)]


@pytest.fixture(scope="module")
def tiny_features(data_dir, tiny_rows):
    return load_features(tiny_rows, data_dir / "galaxy", GalaxyPreprocess(size=32), False)


def test_committed_manifest_is_the_documented_split():
    rows = load_manifest(DEFAULT_MANIFEST)
    assert len(rows) == 1400
    counts = {s: len(rows_in(rows, (s,))) for s in ("train", "val", "test")}
    assert counts == {"train": 978, "val": 211, "test": 211}
    assert {r.label for r in rows if r.gz1_class_name == "edge_on"} == {"spiral"}
    for split in ("val", "test"):
        chosen = rows_in(rows, (split,))
        assert sum(r.label == "elliptical" for r in chosen) == 98
    if SHARED_LABELS.is_file():
        assert assign_splits(load_manifest(SHARED_LABELS), seed=0) == rows


def test_manifest_round_trip_refuses_overwrite(tmp_path, tiny_rows):
    path = tmp_path / "m.csv"
    write_manifest(tiny_rows, path)
    assert load_manifest(path) == tiny_rows
    with pytest.raises(FileExistsError):
        write_manifest(tiny_rows, path)


def test_warp_quarter_turn_and_mirror_are_exact(tiny_features):
    images = jnp.asarray(tiny_features.features[:2])
    n = images.shape[0]
    ones, zeros = jnp.ones(n), jnp.zeros((n, 2))
    same = warp_images(images, jnp.zeros(n), ones, ones, zeros)
    assert np.allclose(same, images, atol=1e-5)
    mirrored = warp_images(images, jnp.zeros(n), -ones, ones, zeros)
    assert np.allclose(mirrored, images[:, :, ::-1], atol=1e-5)
    turned = warp_images(images, jnp.full(n, jnp.pi / 2), ones, ones, zeros)
    candidates = [jnp.rot90(images, k, axes=(1, 2)) for k in (1, 3)]
    assert min(float(jnp.abs(turned - c).max()) for c in candidates) < 1e-4


def test_augmentation_keeps_shape_and_what_defines_the_class(tiny_features):
    """Random rotation/flip/zoom keeps shape, dtype, and each galaxy's light and colour."""
    images = jnp.asarray(tiny_features.features)
    augment = jax.jit(make_batch_augment(AugmentConfig(max_scale=0.1, max_shift=2.0)))
    out = np.asarray(augment(jax.random.key(0), images))
    assert out.shape == images.shape and out.dtype == np.float32
    assert not np.allclose(out, images)
    centre = slice(8, 24)
    for before, after in zip(np.asarray(images), out, strict=True):
        light_before = before[centre, centre].sum()
        assert after[centre, centre].sum() == pytest.approx(light_before, rel=0.25)
        colour = before[centre, centre, 0].sum() / before[centre, centre, 2].sum()
        assert after[centre, centre, 0].sum() / after[centre, centre, 2].sum() == pytest.approx(
            colour, rel=0.1
        )
    again = np.asarray(augment(jax.random.key(0), images))
    assert np.array_equal(out, again)  # seeded: the same key gives the same batch


@pytest.mark.slow
def test_short_training_run_bundle_round_trip_and_report(tmp_path, data_dir, tiny_rows):
    manifest = tmp_path / "tiny.csv"
    write_manifest(tiny_rows, manifest)
    config = GalaxyTrainConfig(
        image_dir=data_dir / "galaxy",
        manifest=manifest,
        preprocess=GalaxyPreprocess(size=32),
        train=TrainConfig(epochs=2, batch_size=4, progress=False),
        network={"widths": [8, 16], "hidden": 16},
        test_views=4,
    )
    card = train_galaxy(config, tmp_path / "work", tmp_path / "bundle")
    assert card["task"] == "galaxy" and card["labels"] == ["elliptical", "spiral"]
    assert card["network"]["name"] == "galaxy_cnn"
    assert card["network"]["kwargs"] == {
        "n_channels": 3,
        "n_classes": 2,
        "widths": [8, 16],
        "hidden": 16,
        "test_views": 4,
    }
    assert card["preprocess"]["name"] == "galaxy" and card["feature_shape"] == [32, 32, 3]
    assert card["training"]["counts"] == {"elliptical": 8, "spiral": 12}
    assert len(card["training"]["history"]) == 2
    assert set(card["metrics"]["accuracy_by_test_views"]) == {"1", "2", "4", "8"}

    from models.bundle import load_bundle

    predictor = load_bundle(tmp_path / "bundle", buckets=(1, 8))
    assert predictor.preprocess == config.preprocess
    val = load_features(rows_in(tiny_rows, ("val",)), data_dir / "galaxy", predictor.preprocess)
    probabilities = predictor.predict(val.features)
    assert probabilities.shape == (10, 2) and np.allclose(probabilities.sum(-1), 1, atol=1e-5)
    assert card["metrics"]["accuracy"] == pytest.approx(
        float((probabilities.argmax(-1) == val.labels).mean()), abs=1e-4
    )

    report = tmp_path / "report"
    metrics = evaluate_galaxy(tmp_path / "bundle", report, data_dir / "galaxy", "val", manifest)
    assert metrics["n"] == 10 and len(metrics["predictions"]) == 10
    on_disk = json.loads((report / "metrics.json").read_text())
    assert on_disk["accuracy"] == metrics["accuracy"]
    assert set(on_disk["per_class"]) == {"elliptical", "spiral"}
    for name in ("confusion_matrix.png", "misclassified.png"):
        assert (report / name).read_bytes().startswith(b"\x89PNG")
