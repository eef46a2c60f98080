"""scripts/learning_curve.py: subsampling per class and the nearest-neighbour baseline."""

from __future__ import annotations

import argparse

import numpy as np
import pytest


@pytest.fixture(scope="module")
def curve(load_script):
    return load_script("learning_curve")


@pytest.fixture(scope="module")
def stellar(curve):
    args = argparse.Namespace(data=None, manifest=None, epochs=None)
    return curve.Stellar(args)


def test_keep_share_is_per_group_seeded_and_keeps_one(curve):
    groups = [list(range(0, 20)), list(range(20, 24)), [24], []]
    kept = curve.keep_share(groups, 0.25, seed=3)
    assert [len(kept & set(g)) for g in groups] == [5, 1, 1, 0]
    assert kept == curve.keep_share(groups, 0.25, seed=3)
    assert kept != curve.keep_share(groups, 0.25, seed=4)


def test_correlation_ignores_uncovered_pixels_and_scale(curve):
    rng = np.random.default_rng(0)
    flux = rng.normal(size=(3, 50))
    flux[1] = 3.0 * flux[0] + 1.0  # same pattern, other scale and offset
    covered = np.ones((3, 50))
    covered[1, :10] = 0.0
    flux[1, :10] = 99.0  # uncovered: must not count
    features = np.stack([flux, covered], axis=-1)
    similarity = curve.correlations(features, np.array([0]), np.array([1, 2]))
    assert similarity[0, 0] == pytest.approx(1.0)
    assert abs(similarity[0, 1]) < 0.5


def test_stellar_subsets_drop_only_lamost_training_rows(stellar):
    rows = stellar.rows
    kept = stellar.subset(0.25, seed=0)
    lamost_train = [i for i in kept if rows[i].source == "lamost" and rows[i].split == "train"]
    per_class = {c: sum(rows[i].mk_class == c for i in lamost_train) for c in "AFGKM"}
    assert per_class == {"A": 4, "F": 6, "G": 4, "K": 5, "M": 2}  # of 18, 23, 18, 19, 8
    others = [i for i, r in enumerate(rows) if r.source != "lamost" or r.split == "test"]
    assert set(others) <= set(kept)


def test_stellar_baseline_on_the_test_split(stellar):
    """The nearest neighbour among all training spectra: 30 of the 37 test spectra."""
    result = stellar.run(1.0, seed=0, with_model=False)
    assert result["n_real"] == 86
    assert result["baseline"] == pytest.approx(30 / 37)
    assert "model" not in result
