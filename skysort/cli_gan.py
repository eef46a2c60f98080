"""Command-line functions of the spectral GAN: train, evaluate, generate, balancing study.

Usage: ``skysort train gan --out bundles/gan``; ``skysort evaluate gan --bundle bundles/gan``;
``skysort generate --n 10 --seed 1 --out o_stars.fits``; ``skysort experiment balance``.
``train_gan``/``evaluate_gan`` are registered in ``skysort.cli``'s TRAINERS/EVALUATORS;
:func:`add_commands` adds the ``generate`` and ``experiment`` subcommands.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

FORMATS = ("fits", "csv", "json")
MAX_CLI_SPECTRA = 100_000


def train_gan(args: argparse.Namespace, workdir: Path) -> dict:
    """``skysort train gan``: train the O-star GAN (resumable in workdir), write the bundle."""
    from training.gan import GanConfig
    from training.gan import train_gan as train

    defaults = GanConfig()
    config = GanConfig(
        data_dir=Path(args.data) if args.data else defaults.data_dir,
        steps=getattr(args, "steps", None) or defaults.steps,
        seed=args.seed,
    )
    return train(config, workdir, Path(args.out))


def evaluate_gan(args: argparse.Namespace, report: Path) -> dict:
    """``skysort evaluate gan``: quality report; prints its own summary lines."""
    from training.gan_eval import evaluate_gan as evaluate
    from training.gan_eval import summary_lines
    from training.stellar import REPO_DATA

    classifier = getattr(args, "classifier", None)
    metrics = evaluate(
        Path(args.bundle),
        report,
        Path(classifier) if classifier else None,
        Path(args.data or REPO_DATA),
    )
    print("\n".join(summary_lines(metrics)))
    return metrics


def _format(args: argparse.Namespace) -> str:
    if args.format:
        return args.format
    suffix = Path(args.out).suffix.lower().lstrip(".") if args.out else ""
    return {"fit": "fits", "fits": "fits", "csv": "csv"}.get(suffix, "json")


def generate(args: argparse.Namespace) -> int:
    """``skysort generate``: write ``--n`` synthetic O-type spectra for ``--seed``."""
    from models.generate import (
        default_generator_path,
        load_generator,
        spectra_to_csv,
        spectra_to_fits,
        spectra_to_json,
    )

    if not 1 <= args.n <= MAX_CLI_SPECTRA:
        print(f"error: --n must be between 1 and {MAX_CLI_SPECTRA}, got {args.n}", file=sys.stderr)
        return 2
    fmt = _format(args)
    if fmt == "fits" and not args.out:
        print("error: --format fits needs --out PATH (binary output)", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else None
    if out is not None and out.exists() and not args.overwrite:
        print(f"error: {out} exists; choose another --out or pass --overwrite", file=sys.stderr)
        return 2
    bundle = Path(args.bundle) if args.bundle else default_generator_path()
    generator = load_generator(bundle)
    flux = generator.generate(args.n, args.seed)
    if fmt == "fits":
        out.write_bytes(spectra_to_fits(generator, flux, args.seed))
    else:
        text = (
            spectra_to_csv(generator, flux, args.seed)
            if fmt == "csv"
            else json.dumps(spectra_to_json(generator, flux, args.seed))
        )
        if out is None:
            sys.stdout.write(text + ("\n" if not text.endswith("\n") else ""))
        else:
            out.write_text(text)
    if out is not None:
        print(
            f"wrote {args.n} spectra ({fmt}) from {generator.bundle_id} to {out}", file=sys.stderr
        )
    return 0


def experiment_balance(args: argparse.Namespace) -> int:
    """``skysort experiment balance``: the class-balancing study (Markdown + JSON tables)."""
    from training.balance import BalanceConfig, run_balance_study, write_study

    defaults = BalanceConfig()
    config = BalanceConfig(
        folds=args.folds,
        methods=tuple(args.methods) if args.methods else defaults.methods,
        seed=args.seed,
        epochs=args.epochs or defaults.epochs,
        gan_steps=args.gan_steps or defaults.gan_steps,
    )
    result = run_balance_study(config, Path(args.workdir), Path(args.report))
    if args.docs:
        write_study(result, Path(args.docs), "gan_balance")
    print(result["markdown"])
    return 0


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``generate`` and ``experiment`` and the GAN's options of ``train``/``evaluate``."""
    sub.choices["train"].add_argument(
        "--steps", type=int, default=None, help="GAN generator updates (default 4000)"
    )
    sub.choices["evaluate"].add_argument(
        "--classifier",
        help="gan only: stellar bundle that never saw synthetic spectra (default bundles/stellar)",
    )

    gen = sub.add_parser("generate", help="write synthetic O-type spectra from the GAN bundle")
    gen.add_argument("--n", type=int, required=True, help="number of spectra")
    gen.add_argument("--seed", type=int, default=0, help="same seed, same spectra")
    gen.add_argument("--out", help="output file (default: JSON/CSV to standard output)")
    gen.add_argument("--format", choices=FORMATS, help="default: from --out's suffix, else json")
    gen.add_argument("--bundle", help="generator bundle (default bundles/gan)")
    gen.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    gen.set_defaults(func=generate)

    experiment = sub.add_parser("experiment", help="studies that train many models")
    studies = experiment.add_subparsers(dest="study", required=True)
    balance = studies.add_parser(
        "balance", help="none / class weights / SMOTE / GAN / GAN+SMOTE, leave-stars-out on real O"
    )
    balance.add_argument("--folds", type=int, default=6, help="groups of O stars (18 = LOSO)")
    balance.add_argument(
        "--methods",
        nargs="+",
        help="none class_weights smote gan gan+smote current (default: all)",
    )
    balance.add_argument("--epochs", type=int, default=None, help="classifier epochs per run")
    balance.add_argument("--gan-steps", type=int, default=None, help="GAN steps per fold")
    balance.add_argument("--seed", type=int, default=0)
    balance.add_argument("--workdir", default="runs/balance", help="per-fold GANs and caches")
    balance.add_argument("--report", default="reports/balance", help="table output folder")
    balance.add_argument(
        "--docs", default="docs", help="also write gan_balance.md/.json here ('' to skip)"
    )
    balance.set_defaults(func=experiment_balance)
