"""The balancing study's parts: folds by star, each method's training set, the summary table."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from flax import nnx

from models.bundle import save_bundle
from models.generate import load_generator
from models.nets.gan import GanGenerator
from models.preprocess import StellarPreprocess
from training.balance import (
    METHODS,
    O_INDEX,
    BalanceConfig,
    _o_star_groups,
    _summarise,
    _winner,
    balanced_set,
    markdown_table,
)
from training.loop import ArraySet
from training.stellar_data import MK_CLASSES, StellarDataConfig, build_augmented_set, load_manifest


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    kwargs = {"latent_dim": 8, "n_pix": 1024, "widths": (8, 4, 4)}
    card = {
        "task": "gan",
        "labels": ["O"],
        "network": {"name": "gan_generator", "kwargs": kwargs},
        "preprocess": StellarPreprocess().to_dict(),
    }
    path = tmp_path_factory.mktemp("gan") / "bundle"
    save_bundle(path, GanGenerator(**kwargs, rngs=nnx.Rngs(0)), card)
    return load_generator(path)


@pytest.fixture
def imbalanced() -> ArraySet:
    rng = np.random.default_rng(0)
    labels = np.array([O_INDEX] * 6 + [1] * 12 + [5] * 20, np.int32)
    features = rng.normal(0, 0.1, (len(labels), 1024, 2)).astype(np.float32)
    features[..., 1] = 1.0
    features[:3, 900:, :] = 0.0  # three O spectra end early, like the JHC atlas
    return ArraySet(features, labels)


def test_every_o_star_is_held_out_exactly_once(data_dir):
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    groups = _o_star_groups(rows, 6, seed=0)
    assert len(groups) == 6 and all(len(g) == 3 for g in groups)
    held = [f for g in groups for f in g]
    assert sorted(held) == sorted(r.file for r in rows if r.mk_class == "O")
    assert len(_o_star_groups(rows, 18, seed=0)[0]) == 1  # leave one star out
    # Stratified by source: the three Pickles templates are never held out together.
    for folds in (3, 6):
        for group in _o_star_groups(rows, folds, seed=0):
            assert sum(f.startswith("pickles") for f in group) <= 1


@pytest.mark.parametrize("method", ["none", "class_weights", "current"])
def test_weighting_methods_keep_the_data(method, imbalanced):
    train, weighting = balanced_set(method, imbalanced, None, seed=0)
    assert train is imbalanced
    assert weighting == ("none" if method == "none" else "balanced")


def test_smote_balances_every_class_in_float32(imbalanced):
    train, weighting = balanced_set("smote", imbalanced, None, seed=0)
    assert weighting == "none" and train.features.dtype == np.float32
    assert set(Counter(train.labels.tolist()).values()) == {20}


def test_gan_fills_the_o_gap_with_real_coverage(imbalanced, generator):
    train, weighting = balanced_set("gan", imbalanced, generator, seed=0)
    counts = Counter(train.labels.tolist())
    assert counts[O_INDEX] == 20 and counts[1] == 12 and weighting == "none"
    synthetic = train.features[len(imbalanced) :]
    assert synthetic.dtype == np.float32 and len(synthetic) == 14
    coverage = synthetic[..., 1]
    assert set(np.unique(coverage)) <= {0.0, 1.0}
    assert np.all(synthetic[..., 0][coverage == 0] == 0)  # no flux where uncovered


def test_gan_plus_smote_balances_everything(imbalanced, generator):
    train, _ = balanced_set("gan+smote", imbalanced, generator, seed=0)
    assert set(Counter(train.labels.tolist()).values()) == {20}


def test_unknown_methods_are_refused():
    assert "gan" in METHODS and "smote" in METHODS
    with pytest.raises(ValueError, match="unknown balancing methods"):
        BalanceConfig(methods=("oversample-everything",))


def test_proportional_class_sizes_follow_the_real_counts(data_dir):
    rows = [
        r
        for r in load_manifest(data_dir / "manifests" / "stellar.csv")
        if r.mk_class in ("O", "M") and r.source != "lamost"
    ]
    config = StellarDataConfig(per_class=42, keep_originals=False, class_sizes="proportional")
    arrays, files, summary = build_augmented_set(rows, data_dir, StellarPreprocess(), config)
    counts = Counter(MK_CLASSES[i] for i in arrays.labels)
    # 18 O spectra vs 23 M (21 Pickles + 2 JHC dwarfs): O gets 42 * 18 / 23.
    assert counts == {"M": 42, "O": round(42 * 18 / 23)}
    assert len(files) == len(arrays) and summary["class_sizes"] == "proportional"


def test_summary_table_and_winner():
    records = [
        {"fold": 0, "file": "a", "true": O_INDEX, "predicted": O_INDEX},
        {"fold": 0, "file": "b", "true": O_INDEX, "predicted": 1},
        {"fold": 0, "file": "c", "true": 3, "predicted": 3},
    ]
    better = [dict(r, predicted=r["true"]) for r in records]
    methods = {"none": _summarise(records), "gan": _summarise(better)}
    assert methods["none"]["o_recall"] == 0.5 and methods["none"]["o_misclassified"] == {"b": "B"}
    assert _winner(methods) == "gan"
    table = markdown_table({"config": {"folds": 6}, "methods": methods, "winner": "gan"})
    assert "| gan **(winner)** | 1.000 |" in table and "| none | 0.500 |" in table


def test_stellar_training_records_its_balancing(imbalanced):
    from training.stellar import StellarTrainConfig, _balance

    same, summary = _balance(imbalanced, {}, StellarTrainConfig())
    assert same is imbalanced and summary == {"balancing": "none", "synthetic_examples": 0}
    balanced, summary = _balance(imbalanced, {}, StellarTrainConfig(balancing="smote"))
    assert summary["synthetic_examples"] == 3 * 20 - len(imbalanced)
    assert summary["examples_per_class"]["O"] == 20 == len(balanced) // 3
    with pytest.raises(ValueError, match="unknown balancing"):
        _balance(imbalanced, {}, StellarTrainConfig(balancing="oversample"))
