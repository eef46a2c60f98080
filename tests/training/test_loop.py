"""The shared classifier loop: it learns, checkpoints, resumes and stops early."""

import numpy as np

from models.nets import build_net
from training.loop import (
    ArraySet,
    TrainConfig,
    class_weights,
    predict_logits,
    train_classifier,
)


def _toy(n=320, length=64, seed=0):
    """Three classes told apart by a line's shape: emission, absorption, or a pair."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    features = rng.normal(0, 0.3, (n, length, 2)).astype(np.float32)
    centre = rng.integers(8, length - 8, n)
    rows = np.arange(n)
    features[rows, centre, 0] += np.where(labels == 1, -3.0, 3.0)
    features[rows, centre + 3, 0] += np.where(labels == 2, 3.0, 0.0)
    return ArraySet(features, labels.astype(np.int32))


def _net():
    return build_net(
        "spectrum_cnn",
        {
            "n_channels": 2,
            "n_classes": 3,
            "widths": (8, 16),
            "kernels": (5, 5),
            "hidden": 16,
            "head": "global",
        },
    )


def test_class_weights_balance_counts():
    weights = class_weights(np.array([0, 0, 0, 1]), 3, "balanced")
    assert np.allclose(weights, [4 / 6, 2.0, 0.0])


def test_loop_learns_and_resumes(tmp_path):
    train, val = _toy(), _toy(seed=1)
    config = TrainConfig(epochs=3, batch_size=32, learning_rate=5e-3, progress=False)
    first = train_classifier(_net(), train, val, config, tmp_path)
    assert [h["epoch"] for h in first.history] == [1, 2, 3]
    assert first.history[-1]["val_accuracy"] > 0.8
    longer = TrainConfig(epochs=5, batch_size=32, learning_rate=5e-3, progress=False)
    resumed = train_classifier(_net(), train, val, longer, tmp_path)
    assert [h["epoch"] for h in resumed.history] == [1, 2, 3, 4, 5]
    assert resumed.history[:3] == first.history
    assert (tmp_path / "checkpoints").is_dir()


def test_early_stopping_ends_training(tmp_path):
    config = TrainConfig(
        epochs=50,
        batch_size=32,
        progress=False,
        early_stop_min_delta=10.0,
        early_stop_patience_steps=5,
    )
    result = train_classifier(_net(), _toy(), None, config, tmp_path)
    assert result.stopped_early
    assert len(result.history) == 1


def test_soft_targets_replace_the_one_hot_labels(tmp_path):
    """With ``targets`` the loss follows them: targets naming the classes in a rotated
    order teach the rotated mapping, whatever the labels say."""
    train, val = _toy(), _toy(seed=1)
    rotated = (train.labels + 1) % 3
    train.targets = np.eye(3, dtype=np.float32)[rotated]
    config = TrainConfig(epochs=3, batch_size=32, learning_rate=5e-3, progress=False)
    result = train_classifier(_net(), train, None, config, tmp_path)
    predicted = predict_logits(result.net, val.features).argmax(-1)
    assert (predicted == (val.labels + 1) % 3).mean() > 0.8
    assert result.history[-1]["train_accuracy"] < 0.2  # accuracy is still against labels
