"""How a model's accuracy grows with the number of real labelled training examples.

Usage::

    python scripts/learning_curve.py stellar --fractions 0.25 0.5 0.75 1 --seeds 0 1
    python scripts/learning_curve.py galaxy --fractions 0.25 0.5 --seeds 0

For each fraction and seed, a seeded share of every class's training examples is kept, the
default model is trained on that with the default recipe, and it is scored on a held-out
split that never trains:

* ``stellar``: the real LAMOST training spectra are subsampled (the library templates always
  stay), and the LAMOST test split is scored. The same reference set also classifies the
  test split by its nearest neighbour (correlation of the continuum-normalised flux over the
  pixels both spectra cover), a template-matching baseline in the manner of the LAMOST
  pipeline, which takes seconds and so can be drawn many times (``--baseline-seeds``).
* ``galaxy``: the training images are subsampled per Galaxy Zoo class, the epochs are
  scaled by 1 / fraction so that every run takes the same number of steps, and the
  validation split is scored.

The held-out split is only scored here, never used to choose a setting. Writes
``curve.json``, ``curve.md`` and ``curve.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm


def keep_share(groups: list[list[int]], fraction: float, seed: int) -> set[int]:
    """Indices kept when a seeded ``fraction`` of every group is kept (at least one each)."""
    rng = np.random.default_rng(seed)
    kept = set()
    for members in groups:
        if members:
            keep = max(1, round(fraction * len(members)))
            kept.update(rng.permutation(members)[:keep].tolist())
    return kept


def subsample(rows: list, group_of, fraction: float, seed: int) -> list[int]:
    """Indices of ``rows`` kept when :func:`keep_share` thins every group; ``group_of(row)``
    names a row's group, or None for a row that always stays."""
    groups: dict = {}
    for i, row in enumerate(rows):
        group = group_of(row)
        if group is not None:
            groups.setdefault(group, []).append(i)
    members = [groups[key] for key in sorted(groups)]
    kept = keep_share(members, fraction, seed)
    return [i for i, row in enumerate(rows) if group_of(row) is None or i in kept]


def correlations(features: np.ndarray, queries: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Pearson correlation of the first channel between each query and each reference,
    over the pixels both cover (last channel); (n_queries, n_references)."""
    flux, covered = features[..., 0].astype(np.float64), features[..., -1] > 0.5
    out = np.zeros((len(queries), len(references)))
    for row, query in enumerate(queries):
        common = covered[references] & covered[query]
        count = np.maximum(common.sum(axis=1, keepdims=True), 1)
        a = np.where(common, flux[references], 0.0)
        b = np.where(common, flux[query], 0.0)
        a -= a.sum(axis=1, keepdims=True) / count * common
        b -= b.sum(axis=1, keepdims=True) / count * common
        norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        out[row] = (a * b).sum(axis=1) / np.where(norm > 0, norm, np.inf)
    return out


def nearest_neighbour_accuracy(
    features: np.ndarray, labels: np.ndarray, references: np.ndarray, queries: np.ndarray
) -> float:
    similarity = correlations(features, queries, references)
    predicted = labels[references[similarity.argmax(axis=1)]]
    return float((predicted == labels[queries]).mean())


class Stellar:
    """Subsampled LAMOST training spectra; CNN and nearest neighbour on the test split."""

    def __init__(self, args: argparse.Namespace):
        from models.preprocess import StellarPreprocess
        from training.stellar import StellarTrainConfig
        from training.stellar_data import load_manifest, read_rows

        self.args = args
        self.defaults = StellarTrainConfig()
        self.rows = load_manifest(Path(args.manifest or self.defaults.manifest))
        self.data_dir = Path(args.data or self.defaults.data_dir)
        self.features = StellarPreprocess().apply_many(read_rows(self.rows, self.data_dir))
        self.labels = np.array([row.mk_class for row in self.rows])
        self.test = np.array([i for i, row in enumerate(self.rows) if row.split == "test"])

    def subset(self, fraction: float, seed: int) -> list[int]:
        from training.stellar_data import MK_CLASSES

        def group(row):
            real = row.source == "lamost" and row.split == "train"
            return MK_CLASSES.index(row.mk_class) if real else None

        return subsample(self.rows, group, fraction, seed)

    def run(self, fraction: float, seed: int, with_model: bool) -> dict:
        from training.stellar import train_stellar
        from training.stellar_data import write_manifest

        kept = self.subset(fraction, seed)
        references = np.array([i for i in kept if self.rows[i].split == "train"])
        result = {
            "fraction": fraction,
            "seed": seed,
            "n_real": sum(self.rows[i].source == "lamost" for i in references),
            "baseline": nearest_neighbour_accuracy(
                self.features, self.labels, references, self.test
            ),
        }
        if with_model:
            with tempfile.TemporaryDirectory() as workdir:
                manifest = Path(workdir) / "manifest.csv"
                write_manifest([self.rows[i] for i in kept], manifest)
                config = dataclasses.replace(
                    self.defaults,
                    data_dir=self.data_dir,
                    manifest=manifest,
                    data=dataclasses.replace(self.defaults.data, seed=seed),
                    train=dataclasses.replace(
                        self.defaults.train,
                        epochs=self.args.epochs or self.defaults.train.epochs,
                        seed=seed,
                    ),
                )
                result["model"] = train_stellar(config, Path(workdir) / "run")["accuracy"]
        return result


class Galaxy:
    """Subsampled training images, the same number of steps; the validation split."""

    def __init__(self, args: argparse.Namespace):
        from training.galaxy import GalaxyTrainConfig
        from training.galaxy_data import load_manifest

        self.args = args
        self.defaults = GalaxyTrainConfig()
        self.rows = load_manifest(Path(args.manifest or self.defaults.manifest))
        self.image_dir = Path(args.data or self.defaults.image_dir)

    def run(self, fraction: float, seed: int, with_model: bool) -> dict:
        from training.galaxy import train_galaxy
        from training.galaxy_data import write_manifest

        def group(row):
            return row.gz1_class if row.split == "train" else None

        rows = [self.rows[i] for i in subsample(self.rows, group, fraction, seed)]
        n_train = sum(row.split == "train" for row in rows)
        result = {"fraction": fraction, "seed": seed, "n_real": n_train}
        if with_model:
            epochs = round((self.args.epochs or self.defaults.train.epochs) / fraction)
            with tempfile.TemporaryDirectory() as workdir:
                manifest = Path(workdir) / "manifest.csv"
                write_manifest(rows, manifest)
                config = dataclasses.replace(
                    self.defaults,
                    image_dir=self.image_dir,
                    manifest=manifest,
                    train=dataclasses.replace(self.defaults.train, epochs=epochs, seed=seed),
                )
                result["model"] = train_galaxy(config, Path(workdir) / "run")["accuracy"]
            result["epochs"] = epochs
        return result


TASKS = {
    "stellar": (Stellar, "real LAMOST training spectra", "LAMOST test split", 0.85),
    "galaxy": (Galaxy, "training images", "validation split", 0.95),
}


def plot(results: list[dict], path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, x_label, split, target = TASKS[task]
    fig, ax = plt.subplots(figsize=(6, 4))
    series = [("model", "CNN", "o"), ("baseline", "nearest neighbour", "s")]
    for key, label, marker in series:
        points = [(r["n_real"], r[key]) for r in results if key in r]
        if not points:
            continue
        n, accuracy = np.array(points).T
        ax.scatter(n, accuracy, marker=marker, alpha=0.4, label=f"{label} (each seed)")
        sizes = sorted(set(n))
        ax.plot(sizes, [accuracy[n == s].mean() for s in sizes], marker=marker)
    ax.axhline(target, color="grey", linestyle="--", label=f"target {target:.2f}")
    ax.set_xscale("log")  # learning curves are roughly straight in log(examples)
    sizes = sorted({r["n_real"] for r in results})
    ax.set_xticks(sizes, [str(s) for s in sizes])
    ax.minorticks_off()
    ax.set_xlabel(x_label)
    ax.set_ylabel(f"accuracy on the {split}")
    ax.set_title(f"{task}: accuracy against the number of {x_label}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--data", help="data folder (default: the repository's)")
    parser.add_argument("--manifest", help="manifest (default: the task's)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.25, 0.5, 0.75, 1.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--baseline-seeds",
        type=int,
        default=0,
        help="stellar: also draw the nearest-neighbour baseline with this many more seeds",
    )
    parser.add_argument("--epochs", type=int, help="epochs at fraction 1 (default: the task's)")
    parser.add_argument("--no-model", action="store_true", help="the baseline only (stellar)")
    parser.add_argument("--out", help="output folder (default: reports/learning_curve_TASK)")
    args = parser.parse_args()
    if args.task == "galaxy" and (args.no_model or args.baseline_seeds):
        parser.error("galaxy has no baseline: drop --no-model and --baseline-seeds")
    if not all(0 < fraction <= 1 for fraction in args.fractions):
        parser.error(f"--fractions must lie in (0, 1], got {args.fractions}")
    out = Path(args.out or f"reports/learning_curve_{args.task}")
    out.mkdir(parents=True, exist_ok=True)
    task = TASKS[args.task][0](args)

    runs = [(f, s, not args.no_model) for f in args.fractions for s in args.seeds]
    first = max(args.seeds) + 1
    extra = range(first, first + args.baseline_seeds)
    runs += [(f, s, False) for f in args.fractions for s in extra]
    results = []
    for fraction, seed, with_model in tqdm(runs, desc=f"{args.task} learning curve", unit="run"):
        started = time.perf_counter()
        result = task.run(fraction, seed, with_model)
        result["seconds"] = round(time.perf_counter() - started, 1)
        results.append(result)
        tqdm.write(json.dumps(result))

    (out / "curve.json").write_text(json.dumps(results, indent=1) + "\n")
    lines = [f"| {TASKS[args.task][1]} | seed | CNN | nearest neighbour |", "|---|---|---|---|"]
    for r in results:
        cells = [f"{r[k]:.3f}" if k in r else "" for k in ("model", "baseline")]
        lines.append(f"| {r['n_real']} | {r['seed']} | {' | '.join(cells)} |")
    (out / "curve.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    plot(results, out / "curve.png", args.task)
    print(f"wrote {out / 'curve.json'}, curve.md and curve.png")


if __name__ == "__main__":
    main()
