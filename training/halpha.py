"""Train and evaluate the H-alpha profile classifier (absorption/emission/double-peak/noise).

Usage::

    card = train_halpha(HalphaTrainConfig(), workdir=Path("runs/halpha"), out=Path("bundle"))
    metrics = evaluate_halpha(Path("bundles/halpha"), Path("reports/halpha"))
    (or ``skysort train halpha --out DIR`` / ``skysort evaluate halpha --bundle DIR``)

Training data: the real labelled Ondřejov CCD700 spectra (``data/ondrejov/index.csv``) plus
profiles from :mod:`training.halpha_generator`; SMOTE (imbalanced-learn) balances the
classes; the network is :class:`models.nets.cnn1d.SpectrumCNN` on 140 points, trained by
:func:`training.loop.train_classifier` with early stopping (loss improving by < 1e-5 over
50 steps). The real spectra cannot be both trained on and scored, so the card holds two
honest figures: a model trained on the generator alone scored on every real spectrum, and
k-fold cross-validation where each fold's real spectra are held out.
"""

from __future__ import annotations

import csv
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from models.bundle import save_bundle
from models.halpha import HALPHA_LABELS, HalphaPreprocess
from models.io import read_spectrum
from models.io.base import Spectrum
from models.nets import build_net
from training.evaluate import classification_metrics
from training.halpha_generator import generate_profiles
from training.loop import ArraySet, TrainConfig, config_dict, predict_logits, train_classifier

REPO_DATA = Path(__file__).resolve().parents[1] / "data"


def default_train_config() -> TrainConfig:
    return TrainConfig(
        epochs=8,
        batch_size=64,
        learning_rate=2e-3,
        early_stop_min_delta=1e-5,
        early_stop_patience_steps=50,
        progress=False,
    )


@dataclass(frozen=True)
class HalphaTrainConfig:
    """Everything that defines an H-alpha model; stored in its bundle."""

    data_dir: Path = REPO_DATA / "ondrejov"
    preprocess: HalphaPreprocess = field(default_factory=HalphaPreprocess)
    synthetic_per_class: int = 1500
    synthetic_instruments: tuple[str, ...] = ("ccd700", "lamost")
    use_real: bool = True
    cv_folds: int = 5
    seed: int = 0
    train: TrainConfig = field(default_factory=default_train_config)
    network: dict = field(
        default_factory=lambda: {
            "widths": [16, 32, 64],
            "kernels": [7, 5, 3],
            "hidden": 64,
            "dropout": 0.2,
        }
    )


def label_of(text: str) -> int | None:
    """Label index from an index.csv label cell ("emission (thesis example ...)" -> 1)."""
    first = text.strip().split(" ")[0] if text.strip() else ""
    return HALPHA_LABELS.index(first) if first in HALPHA_LABELS else None


def load_ondrejov_labelled(data_dir: Path) -> list[tuple[Spectrum, int, str]]:
    """(spectrum, label index, file) of every labelled row of ``data_dir/index.csv``."""
    rows = []
    with open(Path(data_dir) / "index.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            label = label_of(row["label"])
            if label is not None:
                rows.append((read_spectrum(Path(data_dir) / row["file"]), label, row["file"]))
    return rows


def features_of(spectra: Sequence[Spectrum], preprocess: HalphaPreprocess) -> np.ndarray:
    """(N, n_pix, 1) float32 features of spectra."""
    shape = (0, preprocess.n_pix, preprocess.n_channels)
    if not spectra:
        return np.zeros(shape, np.float32)
    return np.stack([preprocess.apply(s) for s in spectra]).astype(np.float32)


def balance(features: np.ndarray, labels: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """SMOTE over-sampling of every class present to the largest class's count.

    SMOTE needs at least two examples of a class (k_neighbors = min(5, smallest - 1));
    a class with a single example is duplicated first (random over-sampling).
    """
    from imblearn.over_sampling import SMOTE, RandomOverSampler

    flat = features.reshape(len(features), -1)
    counts = np.bincount(labels)
    present = counts[counts > 0]
    if len(present) < 2:
        return features, labels
    if present.min() < 2:
        target = {int(k): max(2, int(c)) for k, c in enumerate(counts) if c > 0}
        flat, labels = RandomOverSampler(sampling_strategy=target, random_state=seed).fit_resample(
            flat, labels
        )
        present = np.bincount(labels)[np.bincount(labels) > 0]
    smote = SMOTE(k_neighbors=int(min(5, present.min() - 1)), random_state=seed)
    flat, labels = smote.fit_resample(flat, labels)
    return flat.reshape(-1, *features.shape[1:]).astype(np.float32), labels.astype(np.int32)


def synthetic_set(config: HalphaTrainConfig, seed: int) -> ArraySet:
    """Generator profiles of every instrument in the config, preprocessed."""
    features, labels = [], []
    per_instrument = max(1, config.synthetic_per_class // len(config.synthetic_instruments))
    for k, instrument in enumerate(config.synthetic_instruments):
        spectra, index = generate_profiles(per_instrument, seed * 100 + k, instrument)
        features.append(features_of(spectra, config.preprocess))
        labels.append(index)
    return ArraySet(np.concatenate(features), np.concatenate(labels).astype(np.int32))


def network_kwargs(config: HalphaTrainConfig) -> dict:
    return {
        "n_channels": config.preprocess.n_channels,
        "n_classes": len(HALPHA_LABELS),
        "n_pix": config.preprocess.n_pix,
        **config.network,
    }


def fit(train_set: ArraySet, config: HalphaTrainConfig, workdir: Path, seed: int | None = None):
    """SMOTE-balance ``train_set`` and train a fresh network through the shared loop."""
    seed = config.seed if seed is None else seed
    features, labels = balance(train_set.features, train_set.labels, seed)
    train = dataclasses.replace(config.train, seed=seed)
    net = build_net("spectrum_cnn", network_kwargs(config), seed=seed)
    return train_classifier(net, ArraySet(features, labels), None, train, workdir)


def probabilities_of(net, features: np.ndarray) -> np.ndarray:
    """Softmax probabilities of a trained network (evaluation mode)."""
    return np.asarray(jax.nn.softmax(predict_logits(net, features)))


def _merge(*sets: ArraySet) -> ArraySet:
    return ArraySet(
        np.concatenate([s.features for s in sets]),
        np.concatenate([s.labels for s in sets]).astype(np.int32),
    )


def cross_validate(
    real: ArraySet, synthetic: ArraySet, config: HalphaTrainConfig, workdir: Path
) -> dict:
    """k-fold CV on the real spectra: each fold is scored by a model trained on the
    generator plus the other folds (stratified by dealing each class round-robin)."""
    rng = np.random.default_rng(config.seed)
    fold_of = np.zeros(len(real), int)
    for label in np.unique(real.labels):
        members = rng.permutation(np.flatnonzero(real.labels == label))
        fold_of[members] = (np.arange(len(members)) + rng.integers(config.cv_folds)) % (
            config.cv_folds
        )
    predicted = np.zeros(len(real), int)
    for fold in range(config.cv_folds):
        held = fold_of == fold
        train_real = ArraySet(real.features[~held], real.labels[~held])
        result = fit(_merge(synthetic, train_real), config, workdir / f"cv-{fold}")
        predicted[held] = probabilities_of(result.net, real.features[held]).argmax(-1)
    metrics = classification_metrics(real.labels, predicted, list(HALPHA_LABELS))
    metrics["folds"] = config.cv_folds
    return metrics


def train_halpha(config: HalphaTrainConfig, workdir: Path, out: Path | None = None) -> dict:
    """Generate, balance, train, score honestly, write the bundle to ``out``.

    Returns the model card (without ``out``: the metrics).
    """
    workdir = Path(workdir)
    rows = load_ondrejov_labelled(config.data_dir)
    real = ArraySet(
        features_of([s for s, _, _ in rows], config.preprocess),
        np.asarray([label for _, label, _ in rows], np.int32),
    )
    synthetic = synthetic_set(config, config.seed)
    generator_only = fit(synthetic, config, workdir / "generator-only")
    scored = probabilities_of(generator_only.net, real.features).argmax(-1)
    metrics = {
        "generator_only_on_real": classification_metrics(real.labels, scored, list(HALPHA_LABELS)),
    }
    if config.use_real and config.cv_folds > 1:
        metrics["cross_validation_on_real"] = cross_validate(real, synthetic, config, workdir)
    final = generator_only  # without real spectra in training it is the final model
    if config.use_real:
        final = fit(_merge(synthetic, real), config, workdir / "final")
    headline = metrics.get("cross_validation_on_real", metrics["generator_only_on_real"])
    metrics["accuracy"] = headline["accuracy"]
    if out is None:
        return metrics
    counts = np.bincount(synthetic.labels, minlength=len(HALPHA_LABELS))
    real_counts = np.bincount(real.labels, minlength=len(HALPHA_LABELS))
    card = {
        "task": "halpha",
        "labels": list(HALPHA_LABELS),
        "network": {"name": "spectrum_cnn", "kwargs": network_kwargs(config)},
        "preprocess": config.preprocess.to_dict(),
        "feature_shape": [config.preprocess.n_pix, config.preprocess.n_channels],
        "training": {
            "sources": {
                "ondrejov_real": dict(zip(HALPHA_LABELS, real_counts.tolist(), strict=True))
                if config.use_real
                else {},
                "generator": dict(zip(HALPHA_LABELS, counts.tolist(), strict=True)),
            },
            "generator": "training.halpha_generator.generate_profiles "
            f"({', '.join(config.synthetic_instruments)}; seed {config.seed})",
            "balancing": "SMOTE (imbalanced-learn), every class to the largest",
            "config": config_dict(config.train),
            "history": final.history,
            "stopped_early": final.stopped_early,
            "real_files": [file for _, _, file in rows] if config.use_real else [],
        },
        "metrics": metrics,
    }
    return save_bundle(out, final.net, card)


def evaluate_halpha(bundle: Path, report_dir: Path, data_dir: Path | None = None) -> dict:
    """Score a bundle on the labelled spectra of ``data_dir/index.csv`` and write a report.

    Writes ``metrics.json`` and ``confusion_matrix.png``. ``in_training`` says whether the
    bundle was trained on these files (the default bundle was: use its card's
    cross-validation figure for a held-out score).
    """
    from models.bundle import load_bundle
    from training.evaluate import write_metrics

    data_dir = Path(data_dir or REPO_DATA / "ondrejov")
    predictor = load_bundle(bundle)
    rows = load_ondrejov_labelled(data_dir)
    features = features_of([s for s, _, _ in rows], predictor.preprocess)
    labels = np.asarray([label for _, label, _ in rows])
    predicted = predictor.predict(features).argmax(-1)
    metrics = classification_metrics(labels, predicted, predictor.labels)
    trained_on = set(predictor.card.get("training", {}).get("real_files", []))
    metrics.update(
        {
            "bundle_id": predictor.bundle_id,
            "split": str(data_dir.name),
            "in_training": bool(trained_on & {file for _, _, file in rows}),
            "predictions": [
                {"file": file, "true": HALPHA_LABELS[t], "predicted": predictor.labels[p]}
                for (_, t, file), p in zip(rows, predicted, strict=True)
            ],
        }
    )
    write_metrics(metrics, Path(report_dir), f"{predictor.bundle_id} on {data_dir.name}")
    if metrics["in_training"]:
        held_out = predictor.card.get("metrics", {}).get("cross_validation_on_real", {})
        print(
            f"note: {predictor.bundle_id} was trained on these spectra; its held-out "
            f"cross-validation accuracy is {held_out.get('accuracy')} (bundle.json metrics)",
            file=sys.stderr,
        )
    return metrics
