"""Train and evaluate the galaxy morphology classifier (elliptical vs spiral) and write its bundle.

Usage::

    card = train_galaxy(GalaxyTrainConfig(), Path("runs/galaxy"), out=Path("bundles/galaxy"))
    metrics = evaluate_galaxy(Path("bundles/galaxy"), Path("reports/galaxy"))

(or ``skysort train galaxy`` / ``skysort evaluate galaxy``). Images are read and preprocessed
once; rotation, flip, scale and shift augmentation runs on the device inside the shared
training loop (:func:`training.loop.train_classifier`), because morphology does not depend
on orientation. Running again with the same workdir resumes from the newest checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.ndimage import map_coordinates
from tqdm.auto import tqdm

from models.bundle import save_bundle
from models.image_preprocess import GalaxyPreprocess
from models.io.image import read_image
from models.nets import build_net
from training.evaluate import classification_metrics
from training.galaxy_data import (
    DEFAULT_IMAGES,
    DEFAULT_MANIFEST,
    LABELS,
    GalaxyRow,
    load_manifest,
    rows_in,
)
from training.loop import ArraySet, TrainConfig, config_dict, predict_logits, train_classifier

NETWORK = "galaxy_cnn"


@dataclass(frozen=True)
class AugmentConfig:
    """On-device augmentation of each training batch (label-preserving).

    Every image gets a uniform random rotation in [0, 2 pi), a mirror flip with probability
    1/2, a scale factor log-uniform in [1/(1+max_scale), 1+max_scale] and a shift of up to
    ``max_shift`` pixels in x and y; pixels from outside the image are sky (0).
    """

    max_scale: float = 0.1
    max_shift: float = 2.0


@dataclass(frozen=True)
class GalaxyTrainConfig:
    """Everything that defines a galaxy model; stored in its bundle.

    ``train_splits`` are the manifest splits trained on; ``eval_split`` is scored after
    training and stored as the bundle's metrics (never trained on). ``test_views`` is the
    number of dihedral views (1, 2, 4 or 8) averaged at prediction time by the bundle.
    """

    image_dir: Path = DEFAULT_IMAGES
    manifest: Path = DEFAULT_MANIFEST
    preprocess: GalaxyPreprocess = field(default_factory=GalaxyPreprocess)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    train: TrainConfig = field(
        default_factory=lambda: TrainConfig(epochs=60, batch_size=64, learning_rate=3e-3)
    )
    network: dict = field(default_factory=lambda: {"stem_stride": 2})
    train_splits: tuple[str, ...] = ("train",)
    eval_split: str = "val"
    test_views: int = 1


def warp_images(
    images: jax.Array, angle: jax.Array, flip: jax.Array, scale: jax.Array, shift: jax.Array
) -> jax.Array:
    """Rotate (radians), mirror (flip = -1), zoom and shift (pixels) each image of a batch.

    Bilinear interpolation about the image centre; outside pixels are 0. ``images`` is
    (N, H, W, C); ``angle``, ``flip``, ``scale`` are (N,), ``shift`` is (N, 2) as (dy, dx).
    """
    _, height, width, _ = images.shape
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    yy, xx = jnp.meshgrid(jnp.arange(height) - cy, jnp.arange(width) - cx, indexing="ij")

    def one(image, a, f, s, d):
        cos, sin = jnp.cos(a), jnp.sin(a)
        src_x = (cos * xx - sin * yy) * f / s + cx - d[1]
        src_y = (sin * xx + cos * yy) / s + cy - d[0]

        def band(plane):
            return map_coordinates(plane, [src_y, src_x], order=1, mode="constant", cval=0.0)

        return jax.vmap(band, in_axes=-1, out_axes=-1)(image)

    return jax.vmap(one)(images, angle, flip, scale, shift)


def make_batch_augment(config: AugmentConfig):
    """A jittable ``(key, images) -> images`` for ``train_classifier(batch_augment=...)``."""
    log_scale = math.log1p(config.max_scale)

    def augment(key: jax.Array, images: jax.Array) -> jax.Array:
        n = images.shape[0]
        k_angle, k_flip, k_scale, k_shift = jax.random.split(key, 4)
        angle = jax.random.uniform(k_angle, (n,), maxval=2 * jnp.pi)
        flip = jnp.where(jax.random.bernoulli(k_flip, 0.5, (n,)), -1.0, 1.0)
        scale = jnp.exp(jax.random.uniform(k_scale, (n,), minval=-log_scale, maxval=log_scale))
        shift = jax.random.uniform(
            k_shift, (n, 2), minval=-config.max_shift, maxval=config.max_shift
        )
        return warp_images(images, angle, flip, scale, shift)

    return augment


def load_features(
    rows: list[GalaxyRow], image_dir: Path, preprocess: GalaxyPreprocess, progress: bool = True
) -> ArraySet:
    """Read and preprocess the images of ``rows``: features (N, S, S, 3), labels (N,)."""
    features = np.zeros((len(rows), *preprocess.feature_shape), np.float32)
    bar = tqdm(rows, desc="reading images", disable=not progress, leave=False)
    for i, row in enumerate(bar):
        features[i] = preprocess.apply(read_image(Path(image_dir) / row.file))
    labels = np.array([LABELS.index(row.label) for row in rows], np.int32)
    return ArraySet(features, labels)


def network_kwargs(config: GalaxyTrainConfig, test_views: int) -> dict:
    return {"n_channels": 3, "n_classes": len(LABELS), **config.network, "test_views": test_views}


def train_galaxy(config: GalaxyTrainConfig, workdir: Path, out: Path | None = None) -> dict:
    """Read the data, train (resumable in ``workdir``), score ``eval_split``, write the bundle.

    Test-time augmentation (the mean over 1, 2, 4 and 8 rotations/flips by 90°) is scored
    for the record; the bundle averages ``config.test_views`` views. Returns the model card
    (or, without ``out``, the metrics).
    """
    rows = load_manifest(config.manifest)
    train_rows = rows_in(rows, config.train_splits)
    eval_rows = rows_in(rows, (config.eval_split,))
    progress = config.train.progress
    train_set = load_features(train_rows, config.image_dir, config.preprocess, progress)
    eval_set = load_features(eval_rows, config.image_dir, config.preprocess, progress)
    net = build_net(NETWORK, network_kwargs(config, 1), seed=config.train.seed)
    augment = make_batch_augment(config.augment)
    result = train_classifier(net, train_set, eval_set, config.train, workdir, augment)
    metrics = {}
    for views in sorted({1, 2, 4, 8, config.test_views}):
        result.net.test_views = views
        logits = predict_logits(result.net, eval_set.features, config.train.eval_batch_size)
        metrics[views] = _metrics(eval_set.labels, logits.argmax(-1), list(LABELS))
    result.net.test_views = config.test_views
    summary = {**metrics[config.test_views], "split": config.eval_split}
    summary["accuracy_by_test_views"] = {str(k): v["accuracy"] for k, v in metrics.items()}
    if out is None:
        return summary
    card = {
        "task": "galaxy",
        "labels": list(LABELS),
        "network": {
            "name": NETWORK,
            "kwargs": network_kwargs(config, config.test_views),
        },
        "preprocess": config.preprocess.to_dict(),
        "feature_shape": list(config.preprocess.feature_shape),
        "training": _training_summary(config, train_rows, result.history),
        "metrics": summary,
    }
    return save_bundle(out, result.net, card)


def _metrics(true: np.ndarray, predicted: np.ndarray, labels: list[str]) -> dict:
    """classification_metrics without "one class off", meaningless for two unordered classes."""
    metrics = classification_metrics(true, predicted, labels)
    metrics.pop("one_class_off_or_better", None)
    return metrics


def _training_summary(config: GalaxyTrainConfig, rows: list[GalaxyRow], history: list) -> dict:
    counts = {label: sum(row.label == label for row in rows) for label in LABELS}
    by_gz1 = {}
    for row in rows:
        by_gz1[row.gz1_class_name] = by_gz1.get(row.gz1_class_name, 0) + 1
    return {
        "sources": "SDSS DR7 colour cutouts with Galaxy Zoo 1 labels (data/galaxy/PROVENANCE.txt)",
        "manifest": config.manifest.name,
        "splits": list(config.train_splits),
        "counts": counts,
        "gz1_counts": by_gz1,
        "augmentation": {
            "on_device": "random rotation 0-360 deg, mirror flip, scale and shift",
            **asdict(config.augment),
        },
        "config": config_dict(config.train),
        "history": history,
        "held_out": f"rows with split={config.eval_split} in {config.manifest.name}",
    }


def evaluate_galaxy(
    bundle: Path,
    report_dir: Path,
    data_dir: Path = DEFAULT_IMAGES,
    split: str = "test",
    manifest: Path = DEFAULT_MANIFEST,
) -> dict:
    """Score a galaxy bundle on one split of a manifest and write the report files.

    ``data_dir`` holds the images named in the manifest (the repo copies, or the original
    full-size cutouts). ``split="all"`` scores every row, e.g. of a labels.csv without
    splits. Writes ``metrics.json``, ``confusion_matrix.png`` and ``misclassified.png``.
    """
    from models.bundle import load_bundle
    from training.evaluate import write_metrics

    predictor = load_bundle(bundle)
    rows = rows_in(load_manifest(manifest), (split,))
    eval_set = load_features(rows, Path(data_dir), predictor.preprocess)
    probabilities = predictor.predict(eval_set.features)
    predicted = probabilities.argmax(-1)
    metrics = _metrics(eval_set.labels, predicted, predictor.labels)
    metrics.update({"bundle_id": predictor.bundle_id, "split": split, "manifest": str(manifest)})
    metrics["predictions"] = [
        {"file": row.file, "true": row.label, "gz1_class": row.gz1_class_name,
         "predicted": predictor.labels[p], "probability": round(float(prob[p]), 4)}
        for row, p, prob in zip(rows, predicted, probabilities, strict=True)
    ]  # fmt: skip
    report_dir = Path(report_dir)
    write_metrics(metrics, report_dir, f"galaxy {predictor.bundle_id} on {split}")
    wrong = np.flatnonzero(predicted != eval_set.labels)
    titles = [
        f"{Path(rows[i].file).stem}\ntrue {rows[i].gz1_class_name}, "
        f"pred {predictor.labels[predicted[i]]} {probabilities[i, predicted[i]]:.2f}"
        for i in wrong
    ]
    plot_image_grid(eval_set.features[wrong], titles, report_dir / "misclassified.png")
    return metrics


def plot_image_grid(features: np.ndarray, titles: list[str], path: Path, limit: int = 24) -> None:
    """Up to ``limit`` preprocessed images (what the network saw) in a grid, one title each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(limit, len(titles))
    columns = max(1, min(6, n))
    grid_rows = max(1, math.ceil(n / columns))
    fig, axes = plt.subplots(
        grid_rows, columns, figsize=(2.3 * columns, 2.5 * grid_rows), squeeze=False
    )
    for ax in axes.ravel():
        ax.set_axis_off()
    if n == 0:
        axes[0, 0].text(0.5, 0.5, "no misclassified images", ha="center", va="center")
    for ax, image, title in zip(axes.ravel(), features[:n], titles[:n], strict=False):
        ax.imshow(np.sqrt(np.clip(image, 0.0, 1.0)))  # square-root stretch for faint arms
        ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
