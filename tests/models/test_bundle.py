"""train -> save -> load gives identical predictions; buckets pad correctly."""

import json

import numpy as np
import pytest

from models.bundle import load_bundle, save_bundle
from models.nets import build_net
from models.preprocess import StellarPreprocess
from training.loop import predict_logits


def _card(pre):
    return {
        "task": "stellar",
        "labels": list("OBAFGKM"),
        "network": {
            "name": "spectrum_cnn",
            "kwargs": {
                "n_channels": 3,
                "n_classes": 7,
                "widths": [8, 16],
                "kernels": [5, 5],
                "n_pix": 256,
            },
        },
        "preprocess": pre.to_dict(),
        "feature_shape": [pre.n_pix, pre.n_channels],
    }


def test_save_load_identical_predictions(tmp_path):
    pre = StellarPreprocess(n_pix=256, normalisation="median+continuum")
    card = _card(pre)
    net = build_net(card["network"]["name"], card["network"]["kwargs"], seed=3)
    features = np.random.default_rng(0).normal(size=(40, 256, 3)).astype(np.float32)
    expected = predict_logits(net, features)
    saved = save_bundle(tmp_path / "b", net, card)
    predictor = load_bundle(tmp_path / "b", buckets=(1, 16))
    probabilities = predictor.predict(features)
    assert probabilities.shape == (40, 7)
    reference = np.exp(expected) / np.exp(expected).sum(-1, keepdims=True)
    assert np.allclose(probabilities, reference, atol=1e-5)
    assert np.allclose(predictor.predict(features[:1]), probabilities[:1], atol=1e-6)
    assert predictor.bundle_id == saved["bundle_id"].strip()
    assert predictor.preprocess == pre
    card_on_disk = json.loads((tmp_path / "b" / "bundle.json").read_text())
    assert card_on_disk["versions"]["jax"] and card_on_disk["created"]


def test_rows_are_cut_into_buckets_with_little_padding(tmp_path):
    pre = StellarPreprocess(n_pix=256, normalisation="median+continuum")
    card = _card(pre)
    net = build_net(card["network"]["name"], card["network"]["kwargs"], seed=1)
    save_bundle(tmp_path / "b", net, card)
    predictor = load_bundle(tmp_path / "b", buckets=(1, 8, 32, 64, 128, 256))
    assert predictor.chunk_sizes(100) == [64, 32, 4]  # not one 128-row call
    assert predictor.chunk_sizes(120) == [120]  # 8 rows of padding in a 128 bucket
    assert predictor.chunk_sizes(600) == [256, 256, 64, 24]
    for n in range(1, 300):
        sizes = predictor.chunk_sizes(n)
        assert sum(sizes) == n
        padded = sum(predictor._bucket(size) for size in sizes)
        assert padded - n <= max(8, n // 7 + 1)
    features = np.random.default_rng(1).normal(size=(100, 256, 3)).astype(np.float32)
    whole = predictor.predict(features)
    assert np.allclose(whole[:37], predictor.predict(features[:37]), atol=1e-6)


def test_save_refuses_to_overwrite(tmp_path):
    pre = StellarPreprocess(n_pix=256, normalisation="median+continuum")
    card = _card(pre)
    net = build_net(card["network"]["name"], card["network"]["kwargs"])
    save_bundle(tmp_path / "b", net, card)
    with pytest.raises(FileExistsError):
        save_bundle(tmp_path / "b", net, card)


def test_predictor_rejects_wrong_feature_shape(tmp_path):
    pre = StellarPreprocess(n_pix=256, normalisation="median+continuum")
    card = _card(pre)
    save_bundle(tmp_path / "b", build_net("spectrum_cnn", card["network"]["kwargs"]), card)
    with pytest.raises(ValueError, match="expected"):
        load_bundle(tmp_path / "b", buckets=(4,)).predict(np.zeros((2, 100, 3), np.float32))


def test_ensemble_bundle_averages_member_probabilities(tmp_path):
    pre = StellarPreprocess(n_pix=256, normalisation="median+continuum")
    card = _card(pre)
    nets = [build_net("spectrum_cnn", card["network"]["kwargs"], seed=s) for s in (1, 2)]
    features = np.random.default_rng(1).normal(size=(5, 256, 3)).astype(np.float32)
    member_probabilities = []
    for net in nets:
        logits = predict_logits(net, features)
        member_probabilities.append(np.exp(logits) / np.exp(logits).sum(-1, keepdims=True))
    saved = save_bundle(tmp_path / "e", nets, card)
    predictor = load_bundle(tmp_path / "e", buckets=(8,))
    assert saved["network"]["members"] == 2
    assert np.allclose(predictor.predict(features), np.mean(member_probabilities, 0), atol=1e-5)
    assert not np.allclose(member_probabilities[0], member_probabilities[1], atol=1e-3)
