"""Stellar data and training end to end on a tiny configuration."""

from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from models.bundle import load_bundle
from models.preprocess import StellarPreprocess
from training.loop import TrainConfig
from training.stellar import (
    StellarTrainConfig,
    evaluate_stellar,
    split_validation,
    train_stellar,
)
from training.stellar_data import (
    MK_CLASSES,
    StellarDataConfig,
    build_augmented_set,
    build_training_set,
    load_manifest,
    load_type_numbers,
    make_manifest,
    ordinal_targets,
    type_number,
)


def test_committed_manifest_matches_the_documented_split(data_dir):
    """The manifest is reproducible from the index files (seed 0, 30% of LAMOST per class)."""
    committed = load_manifest(data_dir / "manifests" / "stellar.csv")
    assert committed == make_manifest(data_dir)
    test = [row for row in committed if row.split == "test"]
    assert all(row.source == "lamost" for row in test)
    assert Counter(row.mk_class for row in test) == {"F": 10, "A": 8, "G": 8, "K": 8, "M": 3}
    assert {row.mk_class for row in committed if row.split == "train"} == set(MK_CLASSES)


def test_validation_folds_of_one_source_cover_it_once(data_dir):
    """Cross-validation folds hold out each training row of the chosen source exactly once
    and never touch the test split or another source."""
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    for source in ("lamost", "pickles"):
        members = {row.file for row in rows if row.source == source and row.split == "train"}
        seen: list[str] = []
        for k in range(3):
            folded = split_validation(rows, 0.0, 0, (k, 3), source)
            held = [row for row in folded if row.split == "val"]
            assert {row.source for row in held} == {source}
            assert [r.split for r in folded if r.split == "test"] == [
                r.split for r in rows if r.split == "test"
            ]
            assert abs(len(held) - len(members) / 3) < 1
            seen += [row.file for row in held]
        assert sorted(seen) == sorted(members)
    with pytest.raises(ValueError, match="no manifest rows of source 'sdss'"):
        split_validation(rows, 0.0, 0, (0, 3), "sdss")


def test_training_set_balances_classes_and_real_fraction(data_dir):
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    config = StellarDataConfig(per_class=20, real_fraction=0.5, keep_originals=False)
    subset = [r for r in rows if r.mk_class in ("O", "G")][::3]
    train_set, summary = build_training_set(subset, data_dir, StellarPreprocess(n_pix=256), config)
    assert train_set.features.shape == (40, 256, 2)
    assert summary["examples_per_class"] == {"O": 20, "G": 20}
    assert np.isfinite(train_set.features).all()


def test_type_numbers_from_every_index(data_dir):
    assert type_number("F9") == 39 and type_number("G0") == 40 and type_number("O9.5") == 9.5
    assert type_number("A1IV") == 21 and type_number("M10") == 70
    assert type_number("A47") == 25.5 and type_number("K01") == 50.5  # Pickles ranges
    assert type_number("Non") is None and type_number("") is None
    numbers = load_type_numbers(data_dir)
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    missing = [row.file for row in rows if row.file not in numbers]
    assert len(missing) <= 3, missing  # every row but a few LAMOST files without a subclass
    for row in rows:
        if row.file in numbers and numbers[row.file] < 70:
            assert MK_CLASSES[int(numbers[row.file] // 10)] == row.mk_class, row.file


def test_ordinal_targets_share_only_near_a_boundary():
    f9, f5, g0 = (
        ordinal_targets(c, type_number(t), 1.0) for c, t in [("F", "F9"), ("F", "F5"), ("G", "G0")]
    )
    assert np.allclose([f.sum() for f in (f9, f5, g0)], 1.0)
    assert f9.argmax() == 3 and 0.25 < f9[4] < 0.35  # F9: mostly F, partly G
    assert f5[3] > 0.999
    assert np.allclose(g0, f9[[0, 1, 2, 4, 3, 5, 6]])  # G0 mirrors F9
    assert ordinal_targets("O", 9.5, 1.0).argmax() == 0  # the letter keeps the most
    assert np.array_equal(ordinal_targets("K", 55.0, 0.0), np.eye(7)[5])
    assert np.array_equal(ordinal_targets("K", None, 1.0), np.eye(7)[5])


def test_training_set_carries_ordinal_targets(data_dir):
    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    subset = [r for r in rows if r.mk_class in ("F", "G")][::4]
    config = StellarDataConfig(per_class=20, ordinal_sigma=1.0)
    train_set, summary = build_training_set(subset, data_dir, StellarPreprocess(n_pix=256), config)
    assert train_set.targets.shape == (len(train_set), 7)
    assert np.array_equal(train_set.targets.argmax(-1), train_set.labels)
    assert (train_set.targets.max(-1) < 0.95).any() and summary["ordinal_sigma"] == 1.0
    plain, _ = build_training_set(
        subset, data_dir, StellarPreprocess(n_pix=256), replace(config, ordinal_sigma=0.0)
    )
    assert plain.targets is None
    only_lamost = replace(config, ordinal_sources=("lamost",))
    soft, files, _ = build_augmented_set(
        subset, data_dir, StellarPreprocess(n_pix=256), only_lamost
    )
    one_hot = soft.targets.max(-1) == 1.0
    assert all(one_hot[i] for i, f in enumerate(files) if not f.startswith("lamost/"))
    assert not all(one_hot[i] for i, f in enumerate(files) if f.startswith("lamost/"))


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
