"""The ``skysort`` command line: train, evaluate, classify, serve.

Usage: ``skysort classify spec-55862-B6212_sp06-005.fits`` (see ``skysort --help``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from skysort import cli_gan, cli_halpha
from skysort.cli_common import train_options

REPO = Path(__file__).resolve().parents[1]
CLASSIFY_TASKS = ("auto", "stellar", "galaxy", "halpha")


def _train(args: argparse.Namespace) -> int:
    workdir = Path(args.workdir or REPO / "runs" / args.task)
    card = TRAINERS[args.task](args, workdir)
    summary = {"bundle": str(args.out), "bundle_id": card["bundle_id"]}
    metrics = card["metrics"]
    summary.update({k: metrics[k] for k in ("accuracy", "o_share", "steps") if k in metrics})
    print(json.dumps(summary))
    return 0


def _train_stellar(args: argparse.Namespace, workdir: Path) -> dict:
    from training.loop import TrainConfig
    from training.stellar import StellarTrainConfig, train_stellar
    from training.stellar_data import StellarDataConfig

    defaults = StellarTrainConfig()
    config = StellarTrainConfig(
        data_dir=Path(args.data) if args.data else defaults.data_dir,
        data=StellarDataConfig(
            per_class=args.per_class,
            seed=args.seed,
            ordinal_sigma=StellarDataConfig.ordinal_sigma
            if args.ordinal_sigma is None
            else args.ordinal_sigma,
        ),
        train=TrainConfig(
            epochs=args.epochs or defaults.train.epochs, seed=args.seed, batch_size=args.batch_size
        ),
        members=args.members,
    )
    return train_stellar(config, workdir, Path(args.out))


def _train_galaxy(args: argparse.Namespace, workdir: Path) -> dict:
    from training.galaxy import GalaxyTrainConfig, train_galaxy

    defaults = GalaxyTrainConfig()
    train = train_options(defaults.train, args)
    image_dir = Path(args.data) if args.data else defaults.image_dir
    config = dataclasses.replace(defaults, image_dir=image_dir, train=train)
    return train_galaxy(config, workdir, Path(args.out))


def _evaluate_galaxy(args: argparse.Namespace, report: Path) -> dict:
    from training.galaxy import evaluate_galaxy
    from training.galaxy_data import DEFAULT_IMAGES, DEFAULT_MANIFEST

    data = Path(args.data) if args.data else DEFAULT_IMAGES
    labels = data / "labels.csv"
    if args.data and labels.is_file():
        manifest, split = labels, "all"
    else:
        manifest, split = DEFAULT_MANIFEST, args.split
    return evaluate_galaxy(Path(args.bundle), report, data, split, manifest)


def _evaluate_stellar(args: argparse.Namespace, report: Path) -> dict:
    from training.stellar import REPO_DATA, evaluate_stellar

    data = Path(args.data or REPO_DATA)
    return evaluate_stellar(Path(args.bundle), report, data, args.split)


def _evaluate(args: argparse.Namespace) -> int:
    report = Path(args.report or REPO / "reports" / args.task)
    metrics = EVALUATORS[args.task](args, report)
    if "accuracy" not in metrics:  # the GAN report prints its own summary
        print(f"report written to {report}", file=sys.stderr)
        return 0
    summary = {k: metrics[k] for k in ("bundle_id", "split", "n", "accuracy", "macro_f1")}
    summary["per_class"] = metrics["per_class"]
    print(json.dumps(summary, indent=2))
    print(f"report written to {report}", file=sys.stderr)
    return 0


#: task -> function(args, workdir) that trains and returns the bundle's card.
TRAINERS = {
    "stellar": _train_stellar,
    "galaxy": _train_galaxy,
    "halpha": cli_halpha.train_halpha_command,
    "gan": cli_gan.train_gan,
}
#: task -> function(args, report_dir) that scores a bundle and returns its metrics.
EVALUATORS = {
    "stellar": _evaluate_stellar,
    "galaxy": _evaluate_galaxy,
    "halpha": cli_halpha.evaluate_halpha_command,
    "gan": cli_gan.evaluate_gan,
}


def _classify(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    from models.bundle import load_bundle
    from models.inference import classify_files, load_default_predictors, preparation_pool
    from models.prepare import keep_freed_memory

    keep_freed_memory()  # batched preprocessing without page faults (and in the pool's workers)
    if args.bundle:
        predictor = load_bundle(args.bundle)
        predictors = {predictor.task: predictor}
    else:
        predictors = load_default_predictors()
    failed = 0
    chunk = args.batch_size
    workers = args.workers if args.workers is not None else _default_workers(len(args.files))
    pool = preparation_pool(workers) if workers > 1 else None
    bar = tqdm(
        total=len(args.files),
        desc="classifying",
        unit="file",
        disable=len(args.files) <= chunk or args.quiet,
    )
    try:
        for start in range(0, len(args.files), chunk):
            batch = args.files[start : start + chunk]
            for result in classify_files(batch, predictors, args.task, pool):
                failed += "error" in result
                print(json.dumps(result), flush=True)
                bar.update(1)
    finally:
        bar.close()
        if pool is not None:
            pool.shutdown()
    return 1 if failed else 0


def _default_workers(n_files: int) -> int:
    """Worker processes pay off once there are thousands of files (each starts in ~1 s)."""
    return min(os.cpu_count() or 1, 4) if n_files >= 2000 else 1


def _serve(args: argparse.Namespace) -> int:
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        "serving.service:Skysort",
        "--host",
        args.host,
        "--port",
        str(args.port),
    ]
    # exec, not a child process: Ctrl-C and SIGTERM (e.g. from a container runtime) then
    # reach BentoML directly and nothing is left running.
    os.chdir(REPO)
    os.execve(sys.executable, command, {**os.environ, "PYTHONPATH": str(REPO)})
    return 0  # not reached


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="skysort",
        description=(
            "Classify stellar spectra (MK class) and galaxy images (spiral/elliptical) "
            "with JAX/Flax CNNs, and serve the models."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model and write its bundle")
    train.add_argument("task", choices=sorted(TRAINERS))
    train.add_argument("--data", help="data folder (default: the repo's data/)")
    train.add_argument("--out", required=True, help="new bundle directory to write")
    train.add_argument(
        "--workdir", help="checkpoint folder; re-running resumes (default runs/TASK)"
    )
    train.add_argument(
        "--epochs", type=int, default=None, help="epochs (default: stellar 20, galaxy 60)"
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--batch-size", type=int, default=64)
    train.add_argument(
        "--members",
        type=int,
        default=1,
        help="ensemble members (seeds); each costs one more forward pass",
    )
    train.add_argument(
        "--per-class", type=int, default=1200, help="augmented training examples per class"
    )
    train.add_argument(
        "--ordinal-sigma",
        type=float,
        default=None,
        help="stellar: width in subtypes of the soft targets that put a late-F star partly "
        "in G (0: one-hot letters; default: the recipe's)",
    )
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("evaluate", help="score a bundle on held-out real data")
    evaluate.add_argument("task", choices=sorted(EVALUATORS))
    evaluate.add_argument("--bundle", required=True)
    evaluate.add_argument("--data", help="data folder (default: the repo's data/)")
    evaluate.add_argument("--report", help="report folder (default reports/TASK)")
    evaluate.add_argument("--split", default="test", help="manifest split to score (default test)")
    evaluate.set_defaults(func=_evaluate)

    classify = sub.add_parser("classify", help="classify files; prints one JSON object per line")
    classify.add_argument("files", nargs="+", metavar="FILE")
    classify.add_argument("--task", choices=CLASSIFY_TASKS, default="auto")
    classify.add_argument("--bundle", help="bundle directory (default: the bundled models)")
    classify.add_argument("--batch-size", type=int, default=256, help="files per predict call")
    classify.add_argument(
        "--workers",
        type=int,
        default=None,
        help="processes that read and preprocess files (default: CPU count for >= 2000 files)",
    )
    classify.add_argument("--quiet", action="store_true", help="no progress bar")
    classify.set_defaults(func=_classify)

    serve = sub.add_parser("serve", help="start the HTTP service with the bundled models")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=3000)
    serve.set_defaults(func=_serve)

    from survey.cli import add_commands

    add_commands(sub)
    cli_halpha.add_commands(sub)
    cli_gan.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
