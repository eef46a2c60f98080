"""H-alpha training: labels of the real data, SMOTE balancing, a short training run scored
on the real Ondřejov spectra, and the default bundle's evaluation report."""

import dataclasses
import json

import numpy as np

from models.halpha import HalphaPreprocess
from skysort.cli import main
from training.halpha import (
    HalphaTrainConfig,
    balance,
    default_train_config,
    label_of,
    load_ondrejov_labelled,
    train_halpha,
)


def test_label_cells_of_the_index_are_parsed():
    assert label_of("absorption") == 0
    assert label_of("emission (thesis example file; not in label CSV)") == 1
    assert label_of("double-peak") == 2
    assert label_of("(thesis example file of BT CMi; not in label CSV)") is None


def test_real_labelled_set_counts(data_dir):
    rows = load_ondrejov_labelled(data_dir / "ondrejov")
    counts = np.bincount([label for _, label, _ in rows], minlength=4)
    assert counts.tolist() == [21, 4, 1, 0]
    assert all(spectrum.meta["source"] == "ondrejov" for spectrum, _, _ in rows)


def test_smote_balances_every_present_class_even_a_singleton():
    rng = np.random.default_rng(0)
    features = rng.normal(size=(26, 140, 1))
    labels = np.array([0] * 21 + [1] * 4 + [2])
    balanced, new_labels = balance(features, labels, seed=0)
    assert np.bincount(new_labels).tolist() == [21, 21, 21]
    assert balanced.dtype == np.float32 and balanced.shape == (63, 140, 1)
    # The originals are kept; the new minority examples lie between minority examples.
    assert np.allclose(balanced[:26], features.astype(np.float32))
    emission = features[labels == 1, :, 0]
    made = balanced[26:][new_labels[26:] == 1, :, 0]
    assert np.all(made >= emission.min(0) - 1e-6) and np.all(made <= emission.max(0) + 1e-6)


def test_short_training_on_the_generator_scores_the_real_spectra(tmp_path, data_dir):
    train = dataclasses.replace(default_train_config(), epochs=4)
    config = HalphaTrainConfig(
        data_dir=data_dir / "ondrejov", synthetic_per_class=300, use_real=False, train=train
    )
    card = train_halpha(config, tmp_path / "work", tmp_path / "bundle")
    scored = card["metrics"]["generator_only_on_real"]
    assert scored["n"] == 26 and scored["accuracy"] >= 0.8
    assert card["metrics"]["accuracy"] == scored["accuracy"]
    assert card["training"]["sources"]["generator"]["noise"] == 300
    assert card["training"]["real_files"] == []
    assert card["training"]["config"]["early_stop_min_delta"] == 1e-5
    assert card["training"]["config"]["early_stop_patience_steps"] == 50
    assert card["preprocess"] == HalphaPreprocess().to_dict()


def test_default_bundle_meets_the_accuracy_target_and_evaluates(tmp_path, capsys):
    from tests.conftest import REPO_ROOT

    bundle = REPO_ROOT / "bundles" / "halpha"
    card = json.loads((bundle / "bundle.json").read_text())
    held_out = card["metrics"]["cross_validation_on_real"]
    assert held_out["accuracy"] >= 0.9 and held_out["n"] == 26
    assert card["metrics"]["generator_only_on_real"]["accuracy"] >= 0.9
    report = tmp_path / "report"
    assert main(["evaluate", "halpha", "--bundle", str(bundle), "--report", str(report)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n"] == 26 and summary["accuracy"] >= 0.9
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["in_training"] is True  # the default bundle trains on all real spectra
    assert (report / "confusion_matrix.png").stat().st_size > 5000
