"""Stellar training and test sets: library templates + real LAMOST spectra, augmented.

Usage::

    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    config = StellarDataConfig()
    train_set, summary = build_training_set(rows, data_dir, StellarPreprocess(), config)

The manifest lists every real file with its MK letter, source and split. LAMOST spectra
labelled ``test`` are never trained on; they are the documented held-out split.
"""

from __future__ import annotations

import csv
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.special import ndtr
from tqdm.auto import tqdm

from models.io import Spectrum, read_spectrum
from training.augment import AugmentConfig, augment, config_to_dict
from training.loop import ArraySet

MK_CLASSES = ("O", "B", "A", "F", "G", "K", "M")
MANIFEST_FIELDS = ("file", "mk_class", "source", "split")


@dataclass(frozen=True)
class ManifestRow:
    file: str
    mk_class: str
    source: str
    split: str


@dataclass(frozen=True)
class StellarDataConfig:
    """How many augmented examples to draw, and how.

    Args:
        per_class: augmented training examples per MK class; each class's real spectra are
            cycled through until the class has this many, so rare classes (O: ~18 library
            stars) are seen as often as common ones.
        real_fraction: share of each class's augmented examples drawn from real survey
            (LAMOST) spectra when the class has any, the rest from library templates.
            The templates are coarser (R~500) and differ in flux calibration, so real
            spectra get more weight than their count alone would give them.
        keep_originals: also include every training spectrum once without augmentation.
        seed: seed of the numpy Generator that draws the augmentations.
        class_sizes: ``"equal"`` (every class gets ``per_class`` examples: oversampling by
            augmentation, the default) or ``"proportional"`` (a class gets ``per_class``
            times its share of real spectra relative to the largest class: the data's own
            imbalance, the starting point of the balancing study in training/balance.py).
        ordinal_sigma: width in subtypes of the soft targets (:func:`ordinal_targets`)
            that tell the network how close a star is to the next letter; 0 trains on
            one-hot letters. 1.0 was chosen by cross-validation (README, "Stellar model").
        ordinal_sources: the manifest sources whose spectra get soft targets (all by
            default; LAMOST alone was measured and not kept, README "Stellar model").
    """

    per_class: int = 1200
    real_fraction: float = 0.7
    keep_originals: bool = True
    seed: int = 0
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    class_sizes: str = "equal"
    ordinal_sigma: float = 1.0
    ordinal_sources: tuple[str, ...] = ("lamost", "pickles", "jhc_atlas", "jhc_dwarfs")


#: Column of each data folder's index.csv that holds the spectral type with its subtype.
SUBTYPE_COLUMNS = {
    "pickles_1998": "spectral_type",
    "jhc_atlas": "sptype",
    "jhc_mk_dwarfs": "spectral_type",
    "lamost": "pipeline_subclass",
}


def type_number(spectral_type: str) -> float | None:
    """MK type on one axis, O0 = 0 ... M9 = 69, from ``"G2"``, ``"O9.5"``, ``"A1IV"``; the
    Pickles ranges (``"A47"``: A4-7, ``"K01"``) give their middle, ``"M10"`` is M10.
    None without a subtype digit."""
    match = re.match(r"([OBAFGKM])(\d+(?:\.\d+)?)", spectral_type.strip())
    if not match:
        return None
    letter, digits = match.groups()
    if len(digits) == 2 and digits != "10":
        subtype = (int(digits[0]) + int(digits[1])) / 2
    else:
        subtype = float(digits)
    return MK_CLASSES.index(letter) * 10 + subtype


def load_type_numbers(data_dir: Path) -> dict[str, float]:
    """Manifest file -> :func:`type_number` of its subtype, from the folders' index.csv."""
    numbers = {}
    for folder, column in SUBTYPE_COLUMNS.items():
        index = data_dir / folder / "index.csv"
        if not index.exists():
            continue
        with open(index, newline="") as handle:
            for row in csv.DictReader(handle):
                number = type_number(row.get(column) or "")
                if number is not None:
                    numbers[f"{folder}/{row['file']}"] = number
    return numbers


def ordinal_targets(mk_class: str, number: float | None, sigma: float) -> np.ndarray:
    """Soft target over the MK letters: a Gaussian of width ``sigma`` subtypes centred on
    the star's subtype (the middle of its subtype bin), integrated over each letter's ten
    subtypes (O and M open-ended). An F9 star with ``sigma=1`` gets 0.69 F and 0.31 G; an
    F5 star is all F. The letter of the manifest always keeps the largest share."""
    target = np.zeros(len(MK_CLASSES), np.float32)
    letter = MK_CLASSES.index(mk_class)
    if number is None or sigma <= 0 or int(number // 10) != letter:
        target[letter] = 1.0
        return target
    centre = np.clip(number + 0.5, 10 * letter + 0.25, 10 * letter + 9.75)
    bounds = np.array([-np.inf, *[10.0 * k for k in range(1, len(MK_CLASSES))], np.inf])
    cdf = ndtr((bounds - centre) / sigma)
    target[:] = np.diff(cdf)
    return target / target.sum()


def _index_rows(data_dir: Path, folder: str, source: str, letter_column: str) -> list[dict]:
    with open(data_dir / folder / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    return [
        {"file": f"{folder}/{row['file']}", "mk_class": row[letter_column], "source": source}
        for row in rows
        if row.get(letter_column) in MK_CLASSES
    ]


def make_manifest(data_dir: Path, test_fraction: float = 0.3, seed: int = 0) -> list[ManifestRow]:
    """Build the stellar manifest from the data folders' index files.

    Library templates (Pickles, JHC atlas, JHC dwarfs) are all ``train``. Real LAMOST
    low-resolution spectra with a pipeline MK letter are split per class: a fraction
    ``test_fraction`` (at least one per class) goes to ``test``, drawn with ``seed``.
    """
    rows = _index_rows(data_dir, "pickles_1998", "pickles", "mk_letter")
    rows += _index_rows(data_dir, "jhc_atlas", "jhc_atlas", "mk_letter")
    rows += _index_rows(data_dir, "jhc_mk_dwarfs", "jhc_dwarfs", "mk_letter")
    lamost = [
        row
        for row in _index_rows(data_dir, "lamost", "lamost", "mk_letter")
        if Path(row["file"]).name.startswith("spec-")
    ]
    manifest = [ManifestRow(**row, split="train") for row in rows]
    rng = np.random.default_rng(seed)
    for mk_class in MK_CLASSES:
        members = sorted(row["file"] for row in lamost if row["mk_class"] == mk_class)
        n_test = max(1, round(test_fraction * len(members))) if members else 0
        test = set(rng.choice(members, size=n_test, replace=False)) if members else set()
        manifest += [
            ManifestRow(file, mk_class, "lamost", "test" if file in test else "train")
            for file in members
        ]
    return manifest


def write_manifest(rows: list[ManifestRow], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(MANIFEST_FIELDS)
        writer.writerows((r.file, r.mk_class, r.source, r.split) for r in rows)


def load_manifest(path: Path) -> list[ManifestRow]:
    with open(path, newline="") as handle:
        return [ManifestRow(**row) for row in csv.DictReader(handle)]


def resolve(data_dir: Path, file: str) -> Path:
    """Path of a manifest entry; library text files may be stored gzip-compressed."""
    path = data_dir / file
    if not path.exists() and Path(f"{path}.gz").exists():
        return Path(f"{path}.gz")
    return path


def read_rows(rows: list[ManifestRow], data_dir: Path) -> list[Spectrum]:
    return [read_spectrum(resolve(data_dir, row.file)) for row in rows]


def _cycle(members: list[int], n: int) -> list[tuple[int, bool]]:
    """``n`` augmentation jobs cycling evenly through ``members``."""
    if not members or n <= 0:
        return []
    copies = math.ceil(n / len(members))
    return [(i, True) for _ in range(copies) for i in members][:n]


def _class_size(config: StellarDataConfig, n_members: int, n_largest: int) -> int:
    if config.class_sizes == "equal":
        return config.per_class
    if config.class_sizes == "proportional":
        return round(config.per_class * n_members / max(n_largest, 1))
    raise ValueError(f"unknown class_sizes {config.class_sizes!r}")


def build_training_set(
    rows: list[ManifestRow], data_dir: Path, preprocess, config: StellarDataConfig
) -> tuple[ArraySet, dict]:
    """Augmented features and labels from the ``train`` rows, plus a summary for the bundle."""
    train_set, _, summary = build_augmented_set(rows, data_dir, preprocess, config)
    return train_set, summary


def build_augmented_set(
    rows: list[ManifestRow], data_dir: Path, preprocess, config: StellarDataConfig
) -> tuple[ArraySet, list[str], dict]:
    """Like :func:`build_training_set`, also giving the manifest file behind each example.

    The files let a study drop every augmented copy of a held-out star.
    """
    train_rows = [row for row in rows if row.split == "train"]
    spectra = read_rows(train_rows, data_dir)
    rng = np.random.default_rng(config.seed)
    features, labels = [], []
    numbers = load_type_numbers(data_dir) if config.ordinal_sigma > 0 else {}
    jobs = []
    counts = Counter(row.mk_class for row in train_rows)
    largest = max(counts.values(), default=0)
    for mk_class in MK_CLASSES:
        members = [i for i, row in enumerate(train_rows) if row.mk_class == mk_class]
        real = [i for i in members if train_rows[i].source == "lamost"]
        library = [i for i in members if train_rows[i].source != "lamost"]
        size = _class_size(config, len(members), largest)
        n_real = round(size * config.real_fraction) if library else size
        jobs += _cycle(real, n_real if real else 0)
        jobs += _cycle(library, size - (n_real if real else 0))
        if config.keep_originals:
            jobs += [(i, False) for i in members]
    for index, augmented in tqdm(jobs, desc="augmenting stellar spectra", mininterval=1.0):
        spectrum = spectra[index]
        if augmented:
            spectrum = augment(spectrum, rng, config.augment)
        features.append(preprocess.apply(spectrum))
        labels.append(MK_CLASSES.index(train_rows[index].mk_class))
    summary = {
        "real_spectra_per_class": dict(Counter(row.mk_class for row in train_rows)),
        "real_spectra_per_source": dict(Counter(row.source for row in train_rows)),
        "examples_per_class": dict(Counter(MK_CLASSES[label] for label in labels)),
        "augmentation": config_to_dict(config.augment),
        "per_class": config.per_class,
        "real_fraction": config.real_fraction,
        "keep_originals": config.keep_originals,
        "class_sizes": config.class_sizes,
        "seed": config.seed,
    }
    files = [train_rows[index].file for index, _ in jobs]
    train_set = ArraySet(np.stack(features), np.asarray(labels, np.int32))
    if config.ordinal_sigma > 0:
        summary["ordinal_sigma"] = config.ordinal_sigma
        train_set.targets = np.stack(
            [
                ordinal_targets(
                    train_rows[index].mk_class,
                    numbers.get(file)
                    if train_rows[index].source in config.ordinal_sources
                    else None,
                    config.ordinal_sigma,
                )
                for (index, _), file in zip(jobs, files, strict=True)
            ]
        )
    return train_set, files, summary


def build_eval_set(
    rows: list[ManifestRow], data_dir: Path, preprocess, split: str = "test"
) -> tuple[ArraySet, list[ManifestRow]]:
    """Unaugmented features of the rows in ``split`` (the real held-out spectra)."""
    chosen = [row for row in rows if row.split == split]
    features = [preprocess.apply(s) for s in read_rows(chosen, data_dir)]
    labels = np.asarray([MK_CLASSES.index(row.mk_class) for row in chosen], np.int32)
    return ArraySet(np.stack(features), labels), chosen
