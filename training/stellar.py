"""Train the stellar MK classifier and write its bundle.

Usage: ``train_stellar(StellarTrainConfig(), workdir=Path("runs/stellar"), out=Path("bundle"))``
(or ``skysort train stellar``). Running it again with the same workdir resumes training
from the newest Orbax checkpoint, then writes the bundle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from models.bundle import save_bundle
from models.nets import build_net
from models.preprocess import StellarPreprocess
from training.augment import spectral_batch_augment
from training.evaluate import classification_metrics
from training.loop import ArraySet, TrainConfig, config_dict, predict_logits, train_classifier
from training.stellar_data import (
    MK_CLASSES,
    ManifestRow,
    StellarDataConfig,
    build_eval_set,
    build_training_set,
    load_manifest,
)

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_MANIFEST = REPO_DATA / "manifests" / "stellar.csv"


@dataclass(frozen=True)
class StellarTrainConfig:
    """Everything that defines a stellar model; stored in its bundle."""

    data_dir: Path = REPO_DATA
    manifest: Path = DEFAULT_MANIFEST
    preprocess: StellarPreprocess = field(default_factory=StellarPreprocess)
    data: StellarDataConfig = field(default_factory=StellarDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=20))
    network: dict = field(default_factory=lambda: {"dropout": 0.3})
    members: int = 1
    validation_fold: float = 0.0
    cross_validation: tuple[int, int] | None = None
    #: the manifest source whose training rows ``validation_fold``/``cross_validation``
    #: hold out: "lamost" (choosing settings) or "pickles" (unseen library standards)
    validation_source: str = "lamost"
    batch_augment: bool = True
    #: Extra class balancing on top of ``data.class_sizes`` (see training/balance.py):
    #: "none", "smote", "gan" or "gan+smote"; the GAN ones add spectra from ``gan_bundle``.
    balancing: str = "none"
    gan_bundle: Path | None = None


def split_validation(
    rows: list[ManifestRow],
    fraction: float,
    seed: int,
    fold: tuple[int, int] | None = None,
    source: str = "lamost",
) -> list[ManifestRow]:
    """Move training rows of ``source`` to a ``val`` split (for model selection, never the
    test split).

    With ``fold=(k, n)`` those rows are dealt into ``n`` seeded folds and fold ``k``
    becomes ``val`` (cross-validation); otherwise each row goes to ``val`` with
    probability ``fraction``.
    """
    if fold is None and fraction <= 0:
        return rows
    if not any(row.source == source for row in rows):
        raise ValueError(f"no manifest rows of source {source!r} to validate on")
    rng = np.random.default_rng(seed + 1)
    members = [i for i, row in enumerate(rows) if row.source == source and row.split == "train"]
    if fold is not None:
        order = rng.permutation(len(members))
        chosen = {members[j] for j in order[fold[0] :: fold[1]]}
    else:
        chosen = {i for i in members if rng.uniform() < fraction}
    return [dataclasses.replace(r, split="val") if i in chosen else r for i, r in enumerate(rows)]


def network_kwargs(config: StellarTrainConfig) -> dict:
    return {
        "n_channels": config.preprocess.n_channels,
        "n_classes": len(MK_CLASSES),
        "n_pix": config.preprocess.n_pix,
        **config.network,
    }


def train_stellar(config: StellarTrainConfig, workdir: Path, out: Path | None = None) -> dict:
    """Build the data, train (resumable in ``workdir``), evaluate, write the bundle to ``out``.

    With ``validation_fold > 0`` a fold of the LAMOST training spectra is held out and
    scored instead of the test split (for choosing settings without touching the test split).
    Returns the model card (or, without ``out``, the metrics).
    """
    data_dir = Path(config.data_dir)
    rows = load_manifest(Path(config.manifest))
    rows = split_validation(
        rows,
        config.validation_fold,
        config.data.seed,
        config.cross_validation,
        config.validation_source,
    )
    eval_split = "val" if any(row.split == "val" for row in rows) else "test"
    train_set, summary = build_training_set(rows, data_dir, config.preprocess, config.data)
    train_set, summary = _balance(train_set, summary, config)
    eval_set, eval_rows = build_eval_set(rows, data_dir, config.preprocess, eval_split)
    kwargs = network_kwargs(config)
    results = []
    for member in range(config.members):
        train = dataclasses.replace(config.train, seed=config.train.seed + member)
        if config.members > 1:
            print(f"ensemble member {member + 1}/{config.members} (seed {train.seed})")
        results.append(
            train_classifier(
                build_net("spectrum_cnn", kwargs, seed=train.seed),
                train_set,
                eval_set,
                train,
                Path(workdir) / f"member-{member}" if config.members > 1 else Path(workdir),
                batch_augment=spectral_batch_augment if config.batch_augment else None,
            )
        )
    nets = [result.net for result in results]
    metrics = _metrics(nets, eval_set, config, eval_split, eval_rows)
    if out is None:
        return metrics
    card = {
        "task": "stellar",
        "labels": list(MK_CLASSES),
        "network": {"name": "spectrum_cnn", "kwargs": kwargs},
        "preprocess": config.preprocess.to_dict(),
        "feature_shape": list(train_set.features.shape[1:]),
        "training": {
            **summary,
            "manifest": Path(config.manifest).name,
            "config": config_dict(config.train),
            "batch_augment": "training.augment.spectral_batch_augment"
            if config.batch_augment
            else None,
            "history": [result.history for result in results],
            "held_out": f"LAMOST rows with split={eval_split} in {Path(config.manifest).name}",
        },
        "metrics": metrics,
    }
    return save_bundle(out, nets, card)


def _balance(train_set: ArraySet, summary: dict, config: StellarTrainConfig):
    """Apply ``config.balancing``; the summary records it and the synthetic example count."""
    if config.balancing not in ("none", "smote", "gan", "gan+smote"):
        raise ValueError(f"unknown balancing {config.balancing!r}: none, smote, gan, gan+smote")
    summary = {**summary, "balancing": config.balancing, "synthetic_examples": 0}
    if config.balancing == "none":
        return train_set, summary
    from models.generate import default_generator_path, load_generator
    from training.balance import balanced_set

    generator = None
    if config.balancing.startswith("gan"):
        generator = load_generator(config.gan_bundle or default_generator_path())
        summary["gan_bundle"] = generator.bundle_id
    n_before = len(train_set)
    balanced, _ = balanced_set(config.balancing, train_set, generator, config.data.seed)
    if train_set.targets is not None and balanced is not train_set:
        # the balancers keep the original rows first; synthetic rows get one-hot targets
        assert np.array_equal(balanced.labels[:n_before], train_set.labels)
        one_hot = np.eye(len(MK_CLASSES), dtype=np.float32)[balanced.labels[n_before:]]
        balanced.targets = np.concatenate([train_set.targets, one_hot])
    summary["synthetic_examples"] = len(balanced) - n_before
    summary["examples_per_class"] = {
        MK_CLASSES[i]: int(n) for i, n in enumerate(np.bincount(balanced.labels, minlength=7))
    }
    return balanced, summary


def _metrics(nets, eval_set: ArraySet, config, split: str, rows: list[ManifestRow]) -> dict:
    """Scores of the ensemble (mean probability of its members) and of each member."""
    probabilities = [
        jax.nn.softmax(predict_logits(net, eval_set.features, config.train.eval_batch_size))
        for net in nets
    ]
    mean = np.mean(probabilities, axis=0)
    metrics = classification_metrics(eval_set.labels, mean.argmax(-1), list(MK_CLASSES))
    metrics["member_accuracy"] = [
        round(float((p.argmax(-1) == eval_set.labels).mean()), 4) for p in probabilities
    ]
    metrics["split"] = split
    metrics["files"] = [row.file for row in rows]
    return metrics


def evaluate_stellar(
    bundle: Path,
    report_dir: Path,
    data_dir: Path = REPO_DATA,
    split: str = "test",
    manifest: Path = DEFAULT_MANIFEST,
) -> dict:
    """Score a stellar bundle on one split of the manifest and write the report files.

    Writes ``metrics.json``, ``confusion_matrix.png`` and ``misclassified.png`` (up to six
    misclassified spectra with their true and predicted classes) to ``report_dir``.
    """
    from models.bundle import load_bundle
    from training.evaluate import write_metrics
    from training.plots import plot_misclassified_spectra

    predictor = load_bundle(bundle)
    rows = load_manifest(Path(manifest))
    eval_set, chosen = build_eval_set(rows, Path(data_dir), predictor.preprocess, split)
    probabilities = predictor.predict(eval_set.features)
    predicted = probabilities.argmax(-1)
    metrics = classification_metrics(eval_set.labels, predicted, predictor.labels)
    metrics.update(
        {"bundle_id": predictor.bundle_id, "split": split, "manifest": Path(manifest).name}
    )
    metrics["predictions"] = [
        {"file": row.file, "true": row.mk_class, "predicted": predictor.labels[p]}
        for row, p in zip(chosen, predicted, strict=True)
    ]
    write_metrics(metrics, Path(report_dir), f"{predictor.bundle_id} on {split}")
    wrong = np.flatnonzero(predicted != eval_set.labels)
    plot_misclassified_spectra(
        predictor.preprocess.grid,
        eval_set.features[wrong],
        [chosen[i].file for i in wrong],
        [predictor.labels[eval_set.labels[i]] for i in wrong],
        [predictor.labels[predicted[i]] for i in wrong],
        Path(report_dir) / "misclassified.png",
    )
    return metrics
