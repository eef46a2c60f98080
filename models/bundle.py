"""Model bundles: a directory with ``bundle.json`` and ``weights.msgpack``.

Usage::

    save_bundle(out_dir, net, card)                 # training side
    predictor = load_bundle(out_dir)                # serving side, compiles at load
    probabilities = predictor.predict(features)     # (N, n_classes)

``bundle.json`` (the model card) holds: ``task``, ``labels``, ``network`` (registered name and
constructor kwargs), ``preprocess`` (the parameters of the one preprocessing function used
in training and serving), ``training`` (data sources, counts per class, augmentation,
config), ``metrics``, ``created``, ``git_commit``, ``versions`` and ``bundle_id``.
The weights are the network's NNX state without RNG state, serialised with
``flax.serialization.msgpack_serialize`` as a nested dict (one portable file).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx, serialization

from models.nets import build_net
from models.preprocess import build_preprocess

WEIGHTS_FILE = "weights.msgpack"
CARD_FILE = "bundle.json"
DEFAULT_BUCKETS = (1, 8, 32, 64, 128, 256)
_VERSIONED = ("jax", "flax", "optax", "numpy", "astropy", "skysort")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() or None


def _versions() -> dict[str, str]:
    versions = {}
    for name in _VERSIONED:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _weights(net: nnx.Module) -> dict:
    return jax.tree.map(np.asarray, nnx.state(net, nnx.Not(nnx.RngState)).to_pure_dict())


def save_bundle(
    path: str | Path, net: nnx.Module | list[nnx.Module], card: dict[str, Any]
) -> dict[str, Any]:
    """Write the weights and the model card to ``path`` (created; must be empty or new).

    ``net`` may be a list of networks of the same architecture: an ensemble whose
    probabilities the Predictor averages (stored as ``{"members": {"0": ..., ...}}`` and
    ``network.members`` in the card). ``card`` must hold task, labels, network {name,
    kwargs} and preprocess; created, git_commit, versions and bundle_id are added here.
    Returns the completed card.
    """
    path = Path(path)
    if path.exists() and any(path.iterdir()):
        raise FileExistsError(f"{path} is not empty; choose a new --out or remove it")
    path.mkdir(parents=True, exist_ok=True)
    nets = net if isinstance(net, list) else [net]
    state = {"members": {str(i): _weights(member) for i, member in enumerate(nets)}}
    card = {**card, "network": {**card["network"], "members": len(nets)}}
    payload = serialization.msgpack_serialize(state)
    (path / WEIGHTS_FILE).write_bytes(payload)
    created = dt.datetime.now(dt.UTC).replace(microsecond=0)
    digest = hashlib.sha256(payload).hexdigest()[:8]
    card = {
        **card,
        "created": created.isoformat(),
        "git_commit": _git_commit(),
        "versions": _versions(),
        "weights_sha256_8": digest,
        "bundle_id": f"{card['task']}-{created:%Y%m%d}-{digest}",
    }
    (path / CARD_FILE).write_text(json.dumps(card, indent=2, default=_json_default))
    return card


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"cannot store {type(value).__name__} in bundle.json")


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card (bundle.json) of a bundle directory."""
    card_path = Path(path) / CARD_FILE
    if not card_path.is_file():
        raise FileNotFoundError(f"{path} is not a model bundle (no {CARD_FILE})")
    return json.loads(card_path.read_text())


def load_nets(path: str | Path, card: dict[str, Any] | None = None) -> list[nnx.Module]:
    """Rebuild the network(s) of a bundle with their weights, in evaluation mode."""
    card = card or read_card(path)
    restored = serialization.msgpack_restore((Path(path) / WEIGHTS_FILE).read_bytes())
    nets = []
    for key in sorted(restored["members"], key=int):
        net = build_net(card["network"]["name"], card["network"]["kwargs"])
        state = nnx.state(net, nnx.Not(nnx.RngState))
        nnx.replace_by_pure_dict(state, restored["members"][key])
        nnx.update(net, state)
        net.eval()
        nets.append(net)
    return nets


class Predictor:
    """Jitted inference for one bundle, with batches padded to fixed bucket sizes.

    Every bucket shape is compiled in ``__init__`` so that no request waits for XLA.
    """

    def __init__(self, path: str | Path, buckets: tuple[int, ...] = DEFAULT_BUCKETS):
        self.path = Path(path)
        self.card = read_card(path)
        self.task: str = self.card["task"]
        self.labels: list[str] = list(self.card["labels"])
        self.bundle_id: str = self.card["bundle_id"]
        self.preprocess = build_preprocess(self.card["preprocess"])
        self.buckets = tuple(sorted(buckets))
        splits = [nnx.split(net) for net in load_nets(path, self.card)]
        graphdef = splits[0][0]
        # Ensemble members share the architecture: stack their states on a leading axis and
        # vmap one forward pass over it, then average the probabilities.
        self._state = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[s for _, s in splits])

        def forward(states, features):
            def member(state):
                return jax.nn.softmax(nnx.merge(graphdef, state)(features), axis=-1)

            return jax.vmap(member)(states).mean(axis=0)

        self._forward = jax.jit(forward)
        self.feature_shape = tuple(self.card["feature_shape"])
        for size in self.buckets:
            self._run(np.zeros((size, *self.feature_shape), np.float32))

    def _run(self, padded: np.ndarray) -> np.ndarray:
        return np.asarray(self._forward(self._state, jnp.asarray(padded)))

    def _bucket(self, n: int) -> int:
        return next((b for b in self.buckets if b >= n), self.buckets[-1])

    def chunk_sizes(self, n: int) -> list[int]:
        """How ``n`` rows are cut into bucket-sized calls with little padding.

        The network's cost grows with the padded size, so a 100-row batch runs as 64 + 32
        + 8 (4 rows of padding) rather than as one 128- or 256-row call. A chunk is padded
        up to its bucket when that wastes at most an eighth of the bucket, or no more rows
        than the second-smallest bucket holds (per-call overhead dominates there).
        """
        sizes = []
        small = self.buckets[min(1, len(self.buckets) - 1)]
        while n > 0:
            fit = self._bucket(n)
            if fit <= n or fit - n <= max(fit // 8, small):
                take = min(fit, n)
            else:
                take = max(b for b in self.buckets if b <= n)
            sizes.append(take)
            n -= take
        return sizes

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities (N, n_classes) for features (N, *feature_shape)."""
        features = np.asarray(features, np.float32)
        if features.shape[1:] != self.feature_shape:
            raise ValueError(
                f"features of shape {features.shape[1:]}, expected {self.feature_shape}"
            )
        outputs = []
        start = 0
        for size in self.chunk_sizes(len(features)):
            chunk = features[start : start + size]
            start += size
            padded = np.zeros((self._bucket(len(chunk)), *self.feature_shape), np.float32)
            padded[: len(chunk)] = chunk
            outputs.append(self._run(padded)[: len(chunk)])
        if not outputs:
            return np.zeros((0, len(self.labels)), np.float32)
        return np.concatenate(outputs)

    def label_probabilities(self, probabilities: np.ndarray) -> dict[str, float]:
        """One row of probabilities as {label: probability} (rounded to 6 digits)."""
        return {
            label: round(float(p), 6) for label, p in zip(self.labels, probabilities, strict=True)
        }


def load_bundle(path: str | Path, buckets: tuple[int, ...] = DEFAULT_BUCKETS) -> Predictor:
    """Load a bundle directory and return its warm :class:`Predictor`."""
    return Predictor(path, buckets)
