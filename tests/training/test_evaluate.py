import numpy as np

from training.evaluate import classification_metrics, write_metrics


def test_metrics_hand_computed(tmp_path):
    true = np.array([0, 0, 1, 1, 1, 2])
    predicted = np.array([0, 1, 1, 1, 2, 2])
    metrics = classification_metrics(true, predicted, ["a", "b", "c", "d"])
    assert metrics["accuracy"] == round(4 / 6, 4)
    assert metrics["per_class"]["b"] == {
        "precision": 0.6667,
        "recall": 0.6667,
        "f1": 0.6667,
        "support": 3,
    }
    assert metrics["per_class"]["d"]["precision"] is None
    assert metrics["confusion_matrix"][1] == [0, 2, 1, 0]
    write_metrics(metrics, tmp_path, "toy")
    assert (tmp_path / "confusion_matrix.png").stat().st_size > 1000
