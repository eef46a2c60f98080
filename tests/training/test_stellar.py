"""Stellar data and training end to end on a tiny configuration."""

from collections import Counter
from dataclasses import replace

import numpy as np

from models.bundle import load_bundle
from models.preprocess import StellarPreprocess
from training.loop import TrainConfig
from training.stellar import StellarTrainConfig, evaluate_stellar, train_stellar
from training.stellar_data import (
    MK_CLASSES,
    StellarDataConfig,
    build_training_set,
    load_manifest,
    make_manifest,
)


def test_committed_manifest_matches_the_documented_split(data_dir):
    """The manifest is reproducible from the index files (seed 0, 30% of LAMOST per class)."""
    committed = load_manifest(data_dir / "manifests" / "stellar.csv")
    assert committed == make_manifest(data_dir)
    test = [row for row in committed if row.split == "test"]
    assert all(row.source == "lamost" for row in test)
    assert Counter(row.mk_class for row in test) == {"F": 10, "A": 8, "G": 8, "K": 8, "M": 3}
    assert {row.mk_class for row in committed if row.split == "train"} == set(MK_CLASSES)


def test_training_set_balances_classes_and_real_fraction(data_dir):
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    config = StellarDataConfig(per_class=20, real_fraction=0.5, keep_originals=False)
    subset = [r for r in rows if r.mk_class in ("O", "G")][::3]
    train_set, summary = build_training_set(subset, data_dir, StellarPreprocess(n_pix=256), config)
    assert train_set.features.shape == (40, 256, 2)
    assert summary["examples_per_class"] == {"O": 20, "G": 20}
    assert np.isfinite(train_set.features).all()


def test_train_evaluate_round_trip(data_dir, tmp_path):
    config = StellarTrainConfig(
        data_dir=data_dir,
        preprocess=StellarPreprocess(n_pix=256),
        data=StellarDataConfig(per_class=8, keep_originals=False),
        train=replace(TrainConfig(), epochs=1, batch_size=16, progress=False),
        network={"widths": (8, 16), "kernels": (5, 5), "hidden": 16},
        members=2,
    )
    card = train_stellar(config, tmp_path / "work", tmp_path / "bundle")
    assert card["labels"] == list(MK_CLASSES)
    assert card["training"]["examples_per_class"]["O"] == 8
    assert card["metrics"]["n"] == 37 and card["metrics"]["split"] == "test"
    assert card["network"]["members"] == 2 and len(card["metrics"]["member_accuracy"]) == 2
    assert (tmp_path / "work" / "member-1" / "checkpoints").is_dir()
    metrics = evaluate_stellar(tmp_path / "bundle", tmp_path / "report", data_dir)
    assert metrics["n"] == 37
    assert metrics["accuracy"] == card["metrics"]["accuracy"]
    for name in ("metrics.json", "confusion_matrix.png", "misclassified.png"):
        assert (tmp_path / "report" / name).stat().st_size > 0
    assert load_bundle(tmp_path / "bundle").feature_shape == (256, 2)
