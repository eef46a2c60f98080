"""Class-balancing study for the stellar classifier, scored on REAL O spectra held out by star.

Usage: ``run_balance_study(BalanceConfig(), Path("runs/balance"), Path("reports/balance"))``
(or ``skysort experiment balance``).

The O-type stars of the manifest are dealt into ``folds`` groups (18 folds = leave one star
out). For each fold, every augmented copy of that fold's O stars and one fold of the LAMOST
training spectra are removed from training; the classifier is trained once per method and
scored on the unaugmented held-out spectra. A GAN is trained per fold WITHOUT the held-out
stars, so no synthetic spectrum descends from a test star, and synthetic spectra never
enter a test set. The test split of the manifest is never touched.

Methods, all starting from the data's own class sizes (``class_sizes="proportional"``):

* ``none``: plain cross-entropy;
* ``class_weights``: loss weights N / (K n_c);
* ``smote``: SMOTE (imbalanced-learn) up to the largest class, every class;
* ``gan``: GAN-made O spectra up to the largest class;
* ``gan+smote``: half of the O gap from the GAN, the rest and other classes by SMOTE;
* ``current``: the default bundle's recipe (every class augmented to the same size, plus
  class weights), for reference.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models.nets import build_net
from models.preprocess import StellarPreprocess
from training.augment import spectral_batch_augment
from training.evaluate import classification_metrics
from training.loop import ArraySet, TrainConfig, predict_logits, train_classifier
from training.stellar import DEFAULT_MANIFEST, REPO_DATA, split_validation
from training.stellar_data import (
    MK_CLASSES,
    StellarDataConfig,
    build_augmented_set,
    load_manifest,
    read_rows,
)

METHODS = ("none", "class_weights", "smote", "gan", "gan+smote", "current")
O_INDEX = MK_CLASSES.index("O")


@dataclass(frozen=True)
class BalanceConfig:
    """Settings of the study; the classifier is the default stellar network, trained shorter."""

    folds: int = 6
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    per_class: int = 400
    epochs: int = 6
    gan_steps: int = 1500
    gan_examples: int = 1500
    data_dir: Path = REPO_DATA
    manifest: Path = DEFAULT_MANIFEST

    def __post_init__(self) -> None:
        unknown = set(self.methods) - set(METHODS)
        if unknown:
            raise ValueError(f"unknown balancing methods {sorted(unknown)}; known: {METHODS}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")


def _o_star_groups(rows, folds: int, seed: int) -> list[list[str]]:
    """O stars dealt round-robin into ``folds`` groups, stratified by source.

    Stars are listed source by source (shuffled within a source), then dealt in turn, so
    the three Pickles templates — the only O spectra with red coverage and R~500 — never
    leave training together (with 3 unstratified folds they did, and every method then
    called all three B).
    """
    rng = np.random.default_rng(seed)
    o_rows = [r for r in rows if r.mk_class == "O" and r.split == "train"]
    ordered = []
    for source in sorted({r.source for r in o_rows}):
        files = sorted(r.file for r in o_rows if r.source == source)
        ordered += [files[i] for i in rng.permutation(len(files))]
    return [ordered[k::folds] for k in range(folds)]


def _features_by_file(rows, data_dir: Path, preprocess: StellarPreprocess) -> dict[str, np.ndarray]:
    return {
        row.file: preprocess.apply(spectrum)
        for row, spectrum in zip(rows, read_rows(rows, data_dir), strict=True)
    }


def smote(features: np.ndarray, labels: np.ndarray, seed: int, strategy="auto"):
    """SMOTE on flattened features (imbalanced-learn returns float64: cast back)."""
    from imblearn.over_sampling import SMOTE

    flat = features.reshape(len(features), -1)
    resampled, new_labels = SMOTE(sampling_strategy=strategy, random_state=seed).fit_resample(
        flat, labels
    )
    shape = (len(resampled), *features.shape[1:])
    return resampled.reshape(shape).astype(np.float32), new_labels.astype(np.int32)


def gan_features(generator, n: int, o_features: np.ndarray, seed: int) -> np.ndarray:
    """``n`` generated O spectra as features, each with the coverage of a real O example.

    Real O spectra mostly end at 7427 Å (JHC atlas); giving synthetic ones the same coverage
    keeps coverage from telling real and synthetic apart.
    """
    if n <= 0:
        return np.zeros((0, *o_features.shape[1:]), np.float32)
    flux = generator.generate(n, seed) - 1.0
    rng = np.random.default_rng(seed)
    coverage = o_features[rng.integers(len(o_features), size=n), :, -1]
    return np.stack([flux * coverage, coverage], axis=-1).astype(np.float32)


def balanced_set(method: str, train: ArraySet, generator, seed: int) -> tuple[ArraySet, str]:
    """Training arrays and class weighting for one method (``current`` is built elsewhere)."""
    counts = np.bincount(train.labels, minlength=len(MK_CLASSES))
    gap = int(counts.max() - counts[O_INDEX])
    o_features = train.features[train.labels == O_INDEX]
    if method in ("none", "current"):
        return train, "none" if method == "none" else "balanced"
    if method == "class_weights":
        return train, "balanced"
    if method == "smote":
        return ArraySet(*smote(train.features, train.labels, seed)), "none"
    n_gan = gap if method == "gan" else gap // 2
    synthetic = gan_features(generator, n_gan, o_features, seed)
    features = np.concatenate([train.features, synthetic])
    labels = np.concatenate([train.labels, np.full(n_gan, O_INDEX, np.int32)])
    if method == "gan+smote":
        features, labels = smote(features, labels, seed)
    return ArraySet(features, labels), "none"


def _fold_generator(config: BalanceConfig, held_out: list[str], workdir: Path):
    """A GAN trained without the held-out stars (resumed or reused if already there)."""
    from models.generate import load_generator
    from training.gan import GanConfig, train_gan

    bundle = workdir / "bundle"
    if not (bundle / "bundle.json").is_file():
        gan_config = GanConfig(
            steps=config.gan_steps,
            examples=config.gan_examples,
            exclude_files=tuple(held_out),
            seed=config.seed,
            batch_size=32,
            checkpoint_every=200,
            plot_every=config.gan_steps,
            data_dir=config.data_dir,
            manifest=config.manifest,
        )
        train_gan(gan_config, workdir, bundle)
    return load_generator(bundle)


def _train_and_predict(train: ArraySet, weighting: str, evaluation: ArraySet, config, workdir):
    preprocess = StellarPreprocess()
    kwargs = {
        "n_channels": preprocess.n_channels,
        "n_classes": len(MK_CLASSES),
        "n_pix": preprocess.n_pix,
        "dropout": 0.3,
    }
    train_config = TrainConfig(
        epochs=config.epochs, seed=config.seed, class_weighting=weighting, progress=False
    )
    net = build_net("spectrum_cnn", kwargs, seed=config.seed)
    result = train_classifier(
        net, train, None, train_config, workdir, batch_augment=spectral_batch_augment
    )
    return predict_logits(result.net, evaluation.features).argmax(-1)


def _datasets(config: BalanceConfig, rows, preprocess):
    """Augmented sets (proportional, and equal for ``current``) with each example's file."""
    data = StellarDataConfig(per_class=config.per_class, seed=config.seed)
    sets = {}
    sizes = ["proportional"] + (["equal"] if "current" in config.methods else [])
    for class_sizes in sizes:
        chosen = dataclasses.replace(data, class_sizes=class_sizes)
        arrays, files, _ = build_augmented_set(rows, Path(config.data_dir), preprocess, chosen)
        sets[class_sizes] = (arrays, np.asarray(files))
    return sets


def _fold_sets(sets, rows, excluded: set[str], method: str, evaluation_files: list[str]):
    arrays, files = sets["equal" if method == "current" else "proportional"]
    keep = ~np.isin(files, sorted(excluded))
    return ArraySet(arrays.features[keep], arrays.labels[keep])


def run_balance_study(config: BalanceConfig, workdir: Path, report_dir: Path) -> dict:
    """Run every method on every fold; write ``balance.json`` and ``balance.md``.

    Returns the results with the Markdown table under ``"markdown"``.
    """
    started = time.perf_counter()
    rows = load_manifest(Path(config.manifest))
    preprocess = StellarPreprocess()
    groups = _o_star_groups(rows, config.folds, config.seed)
    sets = _datasets(config, rows, preprocess)
    real = _features_by_file(
        [r for r in rows if r.split == "train" and (r.mk_class == "O" or r.source == "lamost")],
        Path(config.data_dir),
        preprocess,
    )
    label_of = {r.file: MK_CLASSES.index(r.mk_class) for r in rows}
    records = {method: [] for method in config.methods}
    for fold, held_out in enumerate(groups):
        folded = split_validation(rows, 0.0, config.seed, (fold, config.folds))
        lamost_val = [r.file for r in folded if r.split == "val"]
        evaluation_files = held_out + lamost_val
        evaluation = ArraySet(
            np.stack([real[f] for f in evaluation_files]),
            np.asarray([label_of[f] for f in evaluation_files], np.int32),
        )
        excluded = set(evaluation_files)
        generator = None
        if any(m.startswith("gan") for m in config.methods):
            generator = _fold_generator(
                config, held_out, Path(workdir) / f"fold{fold}" / "generator"
            )
        for method in config.methods:
            train = _fold_sets(sets, rows, excluded, method, evaluation_files)
            train, weighting = balanced_set(method, train, generator, config.seed + fold)
            run_dir = Path(workdir) / f"fold{fold}" / method.replace("+", "_")
            predicted = _train_and_predict(train, weighting, evaluation, config, run_dir)
            records[method] += [
                {"fold": fold, "file": f, "true": int(t), "predicted": int(p)}
                for f, t, p in zip(evaluation_files, evaluation.labels, predicted, strict=True)
            ]
            print(
                f"fold {fold + 1}/{config.folds} {method}: O recall "
                f"{_o_recall(records[method]):.3f} so far",
                flush=True,
            )
    results = {
        "config": {
            **dataclasses.asdict(config),
            "data_dir": Path(config.data_dir).name,
            "manifest": Path(config.manifest).name,
        },
        "o_star_groups": groups,
        "methods": {m: _summarise(records[m]) for m in config.methods},
        "minutes": round((time.perf_counter() - started) / 60, 1),
    }
    results["winner"] = _winner(results["methods"])
    results["markdown"] = markdown_table(results)
    write_study(results, Path(report_dir))
    return results


def _o_recall(records: list[dict]) -> float:
    o = [r for r in records if r["true"] == O_INDEX]
    return float(np.mean([r["predicted"] == O_INDEX for r in o])) if o else float("nan")


def _summarise(records: list[dict]) -> dict:
    true = np.asarray([r["true"] for r in records])
    predicted = np.asarray([r["predicted"] for r in records])
    metrics = classification_metrics(true, predicted, list(MK_CLASSES))
    o_rows = [r for r in records if r["true"] == O_INDEX]
    lamost = true != O_INDEX
    o_predicted_as = [MK_CLASSES[r["predicted"]] for r in o_rows]
    return {
        "o_recall": round(_o_recall(records), 4),
        "o_precision": metrics["per_class"]["O"]["precision"],
        "accuracy": metrics["accuracy"],
        "macro_f1": metrics["macro_f1"],
        "lamost_accuracy": round(float((predicted[lamost] == true[lamost]).mean()), 4),
        "n_o": len(o_rows),
        "n": len(records),
        "o_misclassified": {
            r["file"]: MK_CLASSES[r["predicted"]] for r in o_rows if r["predicted"] != O_INDEX
        },
        "o_predicted_as": {c: o_predicted_as.count(c) for c in sorted(set(o_predicted_as))},
    }


def _winner(methods: dict) -> str:
    """Highest O recall; ties broken by macro F1, then accuracy."""
    return max(
        methods,
        key=lambda m: (methods[m]["o_recall"], methods[m]["macro_f1"], methods[m]["accuracy"]),
    )


def markdown_table(results: dict) -> str:
    config = results["config"]
    lines = [
        f"Leave-stars-out over {config['folds']} groups of real O stars "
        f"({results['methods'][next(iter(results['methods']))]['n_o']} spectra), plus one "
        "fold of the LAMOST training spectra per group; synthetic spectra never in a test set.",
        "",
        "| method | O recall | O precision | accuracy | macro F1 | LAMOST accuracy |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in results["methods"].items():
        mark = " **(winner)**" if name == results["winner"] else ""
        lines.append(
            f"| {name}{mark} | {m['o_recall']:.3f} | {m['o_precision']} | {m['accuracy']:.3f} "
            f"| {m['macro_f1']:.3f} | {m['lamost_accuracy']:.3f} |"
        )
    return "\n".join(lines)


def write_study(results: dict, folder: Path, name: str = "balance") -> None:
    """Write the table as ``name.md`` and the full results as ``name.json`` in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    payload = {k: v for k, v in results.items() if k != "markdown"}
    (folder / f"{name}.json").write_text(json.dumps(payload, indent=2, default=str))
    (folder / f"{name}.md").write_text(results["markdown"] + "\n")
