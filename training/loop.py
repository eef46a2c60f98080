"""The one classifier training loop, shared by the stellar, H-alpha and galaxy models.

Usage::

    result = train_classifier(net, train_set, val_set, TrainConfig(epochs=30), workdir)
    result.net, result.history

Arrays in, trained NNX module out. The loop is jitted (one XLA program per step shape),
checkpoints with Orbax after every ``checkpoint_every`` epochs in ``workdir/checkpoints``
and resumes from the newest checkpoint when run again with the same workdir. Shuffling
uses ``numpy.random.default_rng([seed, epoch])`` so a resumed run sees the same batches
as an uninterrupted one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax import nnx
from tqdm.auto import tqdm

BatchAugment = Callable[[jax.Array, jax.Array], jax.Array]


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of :func:`train_classifier`.

    ``class_weighting="balanced"`` weights each example by N / (K * n_class) so that rare
    classes count as much as common ones. Early stopping is off unless
    ``early_stop_min_delta`` is set: training then stops once the training loss has not
    improved by at least that much for ``early_stop_patience_steps`` steps.
    """

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    label_smoothing: float = 0.05
    class_weighting: str = "balanced"
    seed: int = 0
    checkpoint_every: int = 1
    keep_checkpoints: int = 2
    early_stop_min_delta: float | None = None
    early_stop_patience_steps: int = 50
    eval_batch_size: int = 256
    progress: bool = True


@dataclass
class ArraySet:
    """Features (N, ...) float32 and integer labels (N,).

    ``targets`` (N, n_classes), optional: soft training targets (rows summing to 1) in
    place of the one-hot labels, e.g. ordinal ones that put a late F9 star partly in G;
    the labels still define accuracy, class weights and balancing.
    """

    features: np.ndarray
    labels: np.ndarray
    targets: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class TrainResult:
    net: nnx.Module
    history: list[dict] = field(default_factory=list)
    stopped_early: bool = False


def class_weights(labels: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    """Per-class loss weights: all ones, or N / (K * n_c) for classes present."""
    if mode == "none":
        return np.ones(n_classes, np.float32)
    if mode != "balanced":
        raise ValueError(f"unknown class_weighting {mode!r}")
    counts = np.bincount(labels, minlength=n_classes).astype(np.float64)
    present = counts > 0
    weights = np.zeros(n_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights.astype(np.float32)


def _loss(net, features, targets, weights, smoothing):
    logits = net(features)
    targets = optax.smooth_labels(targets, smoothing)
    per_example = optax.softmax_cross_entropy(logits, targets) * weights
    loss = per_example.sum() / jnp.maximum(weights.sum(), 1e-9)
    return loss, logits


@nnx.jit(static_argnames=("smoothing", "augment"))
def _train_step(net, optimizer, features, labels, targets, weights, key, smoothing, augment):
    if augment is not None:
        features = augment(key, features)
    grad_fn = nnx.value_and_grad(_loss, has_aux=True)
    (loss, logits), grads = grad_fn(net, features, targets, weights, smoothing)
    optimizer.update(net, grads)
    correct = ((logits.argmax(-1) == labels) * (weights > 0)).sum()
    return loss, correct


@nnx.jit
def _logits(net, features):
    return net(features)


def predict_logits(net: nnx.Module, features: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Logits of ``net`` in evaluation mode, batch by batch (last batch padded)."""
    net.eval()
    outputs = []
    for start in range(0, len(features), batch_size):
        chunk = features[start : start + batch_size]
        padded = np.zeros((batch_size, *chunk.shape[1:]), np.float32)
        padded[: len(chunk)] = chunk
        outputs.append(np.asarray(_logits(net, jnp.asarray(padded)))[: len(chunk)])
    net.train()
    if not outputs:
        return np.zeros((0, 0), np.float32)
    return np.concatenate(outputs)


def _evaluate(net, data: ArraySet, weights: np.ndarray, config: TrainConfig) -> dict:
    logits = predict_logits(net, data.features, config.eval_batch_size)
    log_probs = jax.nn.log_softmax(logits)
    nll = -np.take_along_axis(np.asarray(log_probs), data.labels[:, None], axis=1)[:, 0]
    w = weights[data.labels]
    return {
        "val_loss": float((nll * w).sum() / w.sum()),
        "val_accuracy": float((logits.argmax(-1) == data.labels).mean()),
    }


def _checkpoint_manager(workdir: Path, config: TrainConfig) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(max_to_keep=config.keep_checkpoints, create=True)
    return ocp.CheckpointManager((workdir / "checkpoints").absolute(), options=options)


def _save(manager, epoch, net, optimizer, history, stopped):
    state = {
        "net": nnx.state(net, nnx.Not(nnx.RngState)).to_pure_dict(),
        "optimizer": nnx.state(optimizer).to_pure_dict(),
    }
    meta = {"epoch": epoch, "history": history, "stopped_early": stopped}
    manager.save(
        epoch,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
    )
    manager.wait_until_finished()


def _restore(manager, net, optimizer) -> tuple[int, list, bool]:
    epoch = manager.latest_step()
    if epoch is None:
        return 0, [], False
    target = {
        "net": nnx.state(net, nnx.Not(nnx.RngState)).to_pure_dict(),
        "optimizer": nnx.state(optimizer).to_pure_dict(),
    }
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = manager.restore(
        epoch,
        args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()
        ),
    )
    net_state = nnx.state(net, nnx.Not(nnx.RngState))
    nnx.replace_by_pure_dict(net_state, restored["state"]["net"])
    nnx.update(net, net_state)
    opt_state = nnx.state(optimizer)
    nnx.replace_by_pure_dict(opt_state, restored["state"]["optimizer"])
    nnx.update(optimizer, opt_state)
    meta = restored["meta"]
    return int(meta["epoch"]), list(meta["history"]), bool(meta["stopped_early"])


class _EarlyStop:
    """Stops when the loss has not improved by ``min_delta`` for ``patience`` steps."""

    def __init__(self, min_delta: float | None, patience: int):
        self.min_delta, self.patience = min_delta, patience
        self.best, self.waited = np.inf, 0

    def should_stop(self, loss: float) -> bool:
        if self.min_delta is None:
            return False
        if loss < self.best - self.min_delta:
            self.best, self.waited = loss, 0
        else:
            self.waited += 1
        return self.waited >= self.patience


def train_classifier(
    net: nnx.Module,
    train: ArraySet,
    val: ArraySet | None,
    config: TrainConfig,
    workdir: Path,
    batch_augment: BatchAugment | None = None,
) -> TrainResult:
    """Train ``net`` on ``train`` (monitoring ``val``), resuming from ``workdir`` if possible.

    Args:
        net: an NNX module mapping (batch, ...) features to logits.
        train: training arrays; labels are ints in [0, n_classes).
        val: optional held-out arrays, evaluated after each epoch (never trained on).
        config: hyper-parameters; stored by the caller in the bundle.
        workdir: folder for Orbax checkpoints and ``history.json``.
        batch_augment: optional jittable ``(key, features) -> features`` applied to each
            training batch on the device (e.g. random flips for images).
    """
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    n_classes = _output_dim(net, train.features[:1])
    weights = class_weights(train.labels, n_classes, config.class_weighting)
    steps_per_epoch = max(1, len(train) // config.batch_size)
    total_steps = steps_per_epoch * config.epochs
    warmup = max(1, min(200, total_steps // 10))
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, config.learning_rate, warmup, max(total_steps, warmup + 1)
    )
    tx = optax.adamw(schedule, weight_decay=config.weight_decay)
    optimizer = nnx.Optimizer(net, tx, wrt=nnx.Param)
    manager = _checkpoint_manager(workdir, config)
    start_epoch, history, stopped = _restore(manager, net, optimizer)
    if start_epoch:
        print(f"resuming from {workdir / 'checkpoints'} after epoch {start_epoch}")
    base_key = jax.random.key(config.seed)
    stopper = _EarlyStop(config.early_stop_min_delta, config.early_stop_patience_steps)
    net.train()
    for epoch in range(start_epoch, config.epochs):
        if stopped:
            break
        record, stopped = _run_epoch(
            net,
            optimizer,
            train,
            weights,
            config,
            epoch,
            steps_per_epoch,
            base_key,
            batch_augment,
            stopper,
        )
        if val is not None and len(val):
            record.update(_evaluate(net, val, weights, config))
        history.append(record)
        _print_epoch(record, config)
        if (epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs or stopped:
            _save(manager, epoch + 1, net, optimizer, history, stopped)
    manager.close()
    (workdir / "history.json").write_text(json.dumps(history, indent=1))
    net.eval()
    return TrainResult(net=net, history=history, stopped_early=stopped)


def _output_dim(net: nnx.Module, example: np.ndarray) -> int:
    net.eval()
    dim = int(nnx.eval_shape(lambda m, x: m(x), net, jnp.asarray(example)).shape[-1])
    net.train()
    return dim


def _run_epoch(
    net, optimizer, train, weights, config, epoch, steps_per_epoch, base_key, augment, stopper
):
    rng = np.random.default_rng([config.seed, epoch])
    order = rng.permutation(len(train))
    started = time.perf_counter()
    loss_sum = correct_sum = seen = 0.0
    stopped = False
    targets = train.targets
    if targets is None:
        targets = np.eye(len(weights), dtype=np.float32)[train.labels]
    bar = tqdm(
        range(steps_per_epoch),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not config.progress,
        leave=False,
    )
    for step in bar:
        index = order[step * config.batch_size : (step + 1) * config.batch_size]
        labels = train.labels[index]
        key = jax.random.fold_in(base_key, epoch * steps_per_epoch + step)
        loss, correct = _train_step(
            net,
            optimizer,
            jnp.asarray(train.features[index]),
            jnp.asarray(labels),
            jnp.asarray(targets[index]),
            jnp.asarray(weights[labels]),
            key,
            config.label_smoothing,
            augment,
        )
        loss = float(loss)
        loss_sum += loss * len(index)
        correct_sum += float(correct)
        seen += len(index)
        bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{correct_sum / seen:.3f}")
        if stopper.should_stop(loss):
            stopped = True
            break
    seconds = time.perf_counter() - started
    record = {
        "epoch": epoch + 1,
        "train_loss": loss_sum / max(seen, 1),
        "train_accuracy": correct_sum / max(seen, 1),
        "seconds": seconds,
        "steps_per_second": (step + 1) / seconds,
        "device": jax.devices()[0].device_kind,
    }
    return record, stopped


def _print_epoch(record: dict, config: TrainConfig) -> None:
    if not config.progress:
        return
    parts = [f"epoch {record['epoch']}/{config.epochs}"]
    parts += [f"{k}={v:.4f}" for k, v in record.items() if "loss" in k or "accuracy" in k]
    parts.append(f"{record['steps_per_second']:.1f} steps/s")
    tqdm.write("  ".join(parts))


def config_dict(config: TrainConfig) -> dict:
    """Plain dict of a config, for bundle.json."""
    return asdict(config)
