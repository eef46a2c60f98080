"""Choose the stellar normalisation by measurement (validation fold of the LAMOST train split).

Usage: ``python scripts/stellar_normalisation_study.py --data data --epochs 12 --out reports/norm``

For each normalisation, trains the stellar CNN on the templates plus the LAMOST training
spectra minus a seeded validation fold, scores the fold, and writes a Markdown + JSON table.
The test split is not used.

``--validation-source pickles`` holds out Pickles templates instead (how the model does on
library standards it never saw, a stand-in for the JHC atlas), and ``--red-limit 7427``
scores the held-out spectra a second time cut at that wavelength (the JHC atlas's red end).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

from models.bundle import load_bundle
from models.preprocess import StellarPreprocess
from training.augment import AugmentConfig, config_from_dict, config_to_dict, cut_coverage
from training.loop import TrainConfig
from training.stellar import StellarTrainConfig, split_validation, train_stellar
from training.stellar_data import StellarDataConfig, build_eval_set, load_manifest

CHOICES = ("median", "continuum", "median+continuum")


def _runs(args) -> list[tuple[int, tuple[int, int] | None]]:
    if args.folds:
        return [(seed, (k, args.folds)) for seed in args.seeds for k in range(args.folds)]
    return [(seed, None) for seed in args.seeds]


def _accuracy_cut(config: StellarTrainConfig, bundle: Path, red_limit: float) -> float:
    """Accuracy of ``bundle`` on the held-out rows, every spectrum cut at ``red_limit``."""
    rows = split_validation(
        load_manifest(Path(config.manifest)),
        config.validation_fold,
        config.data.seed,
        config.cross_validation,
        config.validation_source,
    )
    predictor = load_bundle(bundle)
    cut = SimpleNamespace(
        apply=lambda spectrum: predictor.preprocess.apply(cut_coverage(spectrum, None, red_limit))
    )
    held_out, _ = build_eval_set(rows, Path(config.data_dir), cut, "val")
    return float((predictor.predict(held_out.features).argmax(axis=1) == held_out.labels).mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="data")
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--per-class", type=int, default=800)
    parser.add_argument("--fold", type=float, default=0.3)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--folds", type=int, default=0, help="k-fold CV instead of --fold")
    parser.add_argument("--choices", nargs="+", default=list(CHOICES))
    parser.add_argument("--n-pix", type=int, default=2048)
    parser.add_argument("--real-fraction", type=float, default=0.7)
    parser.add_argument("--no-batch-augment", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--network", default="{}", help="extra network kwargs as JSON")
    parser.add_argument("--augment", default="{}", help="AugmentConfig overrides as JSON")
    parser.add_argument(
        "--ordinal-sigma", type=float, default=0.0, help="soft ordinal targets (subtypes)"
    )
    parser.add_argument(
        "--ordinal-sources", nargs="+", default=None, help="sources with soft targets"
    )
    parser.add_argument(
        "--validation-source",
        default="lamost",
        choices=("lamost", "pickles"),
        help="whose training spectra are held out: LAMOST (default) or Pickles templates",
    )
    parser.add_argument(
        "--red-limit",
        type=float,
        help="also score the held-out spectra cut at this wavelength (7427: the JHC atlas)",
    )
    parser.add_argument("--out", default="reports/normalisation_study")
    args = parser.parse_args()
    rows = []
    for normalisation in args.choices:
        for seed, fold in _runs(args):
            config = StellarTrainConfig(
                data_dir=Path(args.data),
                preprocess=StellarPreprocess(normalisation=normalisation, n_pix=args.n_pix),
                data=StellarDataConfig(
                    per_class=args.per_class,
                    seed=seed,
                    real_fraction=args.real_fraction,
                    ordinal_sigma=args.ordinal_sigma,
                    **(
                        {"ordinal_sources": tuple(args.ordinal_sources)}
                        if args.ordinal_sources
                        else {}
                    ),
                    augment=config_from_dict(
                        {**config_to_dict(AugmentConfig()), **json.loads(args.augment)}
                    ),
                ),
                train=replace(TrainConfig(), epochs=args.epochs, seed=seed),
                members=1,
                validation_fold=args.fold,
                cross_validation=fold,
                validation_source=args.validation_source,
                batch_augment=not args.no_batch_augment,
                network={"dropout": args.dropout, **json.loads(args.network)},
            )
            started = time.perf_counter()
            cut = {}
            with tempfile.TemporaryDirectory() as workdir:
                if args.red_limit is None:
                    metrics = train_stellar(config, Path(workdir))
                else:
                    bundle = Path(workdir) / "bundle"
                    metrics = train_stellar(config, Path(workdir), out=bundle)["metrics"]
                    cut = {"red_limit": args.red_limit}
                    cut["val_accuracy_cut"] = _accuracy_cut(config, bundle, args.red_limit)
            rows.append(
                {
                    "normalisation": normalisation,
                    "seed": seed,
                    "fold": fold,
                    "network": args.network,
                    "augment": args.augment,
                    "val_accuracy": metrics["accuracy"],
                    "val_macro_f1": metrics["macro_f1"],
                    "n_val": metrics["n"],
                    "minutes": (time.perf_counter() - started) / 60,
                    "n_pix": args.n_pix,
                    "real_fraction": args.real_fraction,
                    "ordinal_sigma": args.ordinal_sigma,
                    "validation_source": args.validation_source,
                    **cut,
                    "confusion_matrix": metrics["confusion_matrix"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "study.json").write_text(json.dumps(rows, indent=1))
    cut_column = f" cut at {args.red_limit:g} A |" if args.red_limit is not None else ""
    lines = [
        f"| normalisation | seed | fold | val accuracy | val macro F1 | n val |{cut_column}",
        "|---|---|---|---|---|---|" + ("---|" if cut_column else ""),
    ]
    lines += [
        f"| {r['normalisation']} | {r['seed']} | {r['fold']} | {r['val_accuracy']:.3f} | "
        f"{r['val_macro_f1']:.3f} | {r['n_val']} |"
        + (f" {r['val_accuracy_cut']:.3f} |" if cut_column else "")
        for r in rows
    ]
    accuracies = [r["val_accuracy"] for r in rows]
    lines.append(f"\nmean val accuracy over {len(rows)} runs: {sum(accuracies) / len(rows):.3f}")
    if cut_column:
        cut_mean = sum(r["val_accuracy_cut"] for r in rows) / len(rows)
        lines.append(f"mean val accuracy cut at {args.red_limit:g} A: {cut_mean:.3f}")
    (out / "study.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
