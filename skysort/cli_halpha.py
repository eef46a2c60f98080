"""H-alpha commands: ``skysort train/evaluate halpha`` and ``skysort active ...``.

Usage: ``skysort active init --pool spectra/ --db runs/active.sqlite`` then
``skysort active train``, ``skysort active label``, ``skysort active next``,
``skysort active export --out candidates.csv`` (see docs/halpha.md).

Registered in :mod:`skysort.cli` (TRAINERS/EVALUATORS and :func:`add_commands`). Heavy
imports happen inside the commands so that ``skysort --help`` stays fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from skysort.cli_common import train_options

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DB = os.environ.get("SKYSORT_ACTIVE_DB", str(REPO / "runs" / "active" / "active.sqlite"))


def train_halpha_command(args: argparse.Namespace, workdir: Path) -> dict:
    """``skysort train halpha``: generator + real Ondřejov spectra, SMOTE, CNN, bundle."""
    from training.halpha import HalphaTrainConfig, train_halpha

    defaults = HalphaTrainConfig()
    train = train_options(defaults.train, args)
    config = dataclasses.replace(
        defaults,
        data_dir=Path(args.data) if args.data else defaults.data_dir,
        synthetic_per_class=args.per_class,
        seed=args.seed,
        train=train,
    )
    return train_halpha(config, workdir, Path(args.out))


def evaluate_halpha_command(args: argparse.Namespace, report: Path) -> dict:
    """``skysort evaluate halpha``: score a bundle on labelled spectra (index.csv)."""
    from training.halpha import evaluate_halpha

    return evaluate_halpha(Path(args.bundle), report, Path(args.data) if args.data else None)


def _print(summary: object) -> int:
    print(json.dumps(summary, indent=1, default=str))
    return 0


def _init(args: argparse.Namespace) -> int:
    from training.active import init_pool

    labelled = None if args.labelled.lower() == "none" else Path(args.labelled)
    pool = [Path(p) for p in args.pool]
    return _print(init_pool(Path(args.db), pool, labelled, workers=args.workers))


def _train(args: argparse.Namespace) -> int:
    from training.active import ActiveConfig, train_iteration

    config = ActiveConfig(
        review_per_iteration=args.review,
        uncertain_per_iteration=args.uncertain,
        synthetic_per_class=args.synthetic_per_class,
        seed=args.seed,
    )
    return _print(train_iteration(Path(args.db), config))


def _next(args: argparse.Namespace) -> int:
    from training.active import close_iteration

    return _print(close_iteration(Path(args.db)))


def _export(args: argparse.Namespace) -> int:
    from training.active_report import export_candidates

    return _print(export_candidates(Path(args.db), Path(args.out)))


KEYS = {"a": "absorption", "e": "emission", "d": "double-peak", "n": "noise", "s": "skip"}


def ascii_profile(features, width: int = 70, height: int = 12) -> str:
    """A text plot of a min-max scaled profile (values in [-1, 1]), H-alpha in the middle."""
    import numpy as np

    values = np.asarray(features, float).ravel()
    columns = np.interp(np.linspace(0, values.size - 1, width), np.arange(values.size), values)
    rows = np.clip(((1 - columns) / 2 * (height - 1)).round().astype(int), 0, height - 1)
    grid = [[" "] * width for _ in range(height)]
    for x, y in enumerate(rows):
        grid[y][x] = "*"
    return "\n".join("|" + "".join(line) for line in grid) + "\n+" + "-" * width


def label_in_terminal(db: Path, labeller: str, ask=input, say=print) -> dict:
    """Show each unlabelled candidate as a text plot and record the typed label at once.

    Keys: a(bsorption) e(mission) d(ouble-peak) n(oise) s(kip) q(uit). End of input quits.
    """
    from training.active import add_label, candidate_rows

    counts = dict.fromkeys(KEYS.values(), 0)
    for row in candidate_rows(db):
        best = max(row["probabilities"], key=row["probabilities"].get)
        say(ascii_profile(row["features"]))
        say(f"{row['ref']}  [{row['kind']}]  predicted {row['predicted']} ({best})")
        say("  ".join(f"{k}={v:.2f}" for k, v in row["probabilities"].items()))
        while True:
            try:
                answer = ask("[a]bsorption [e]mission [d]ouble-peak [n]oise [s]kip [q]uit: ")
            except EOFError:
                answer = "q"
            answer = answer.strip().lower()[:1]
            if answer in KEYS or answer == "q":
                break
        if answer == "q":
            break
        add_label(db, row["spectrum_id"], KEYS[answer], labeller)
        counts[KEYS[answer]] += 1
    return {"labelled": counts, "remaining": len(candidate_rows(db))}


def _label(args: argparse.Namespace) -> int:
    return _print(label_in_terminal(Path(args.db), labeller=args.labeller))


def _guarded(func):
    """Run an ``active`` command; a state or input problem prints one line and exits 2."""

    def run(args: argparse.Namespace) -> int:
        from models.active_store import ActiveStateError

        try:
            return func(args)
        except (ActiveStateError, FileNotFoundError) as error:
            print(f"skysort active {args.active_command}: {error}", file=sys.stderr)
            return 2

    return run


def add_commands(sub: argparse._SubParsersAction) -> None:
    """``skysort active {init,train,next,export,label}``."""
    active = sub.add_parser("active", help="active learning of H-alpha profiles (SQLite state)")
    commands = active.add_subparsers(dest="active_command", required=True)

    def command(name: str, help_text: str, func) -> argparse.ArgumentParser:
        parser = commands.add_parser(name, help=help_text)
        parser.add_argument(
            "--db",
            default=DEFAULT_DB,
            help=f"state database (default {DEFAULT_DB}; env SKYSORT_ACTIVE_DB)",
        )
        parser.set_defaults(func=_guarded(func))
        return parser

    init = command("init", "register the unlabelled pool and the initial labelled set", _init)
    init.add_argument(
        "--pool", nargs="+", required=True, help="folders (searched for FITS) or text lists"
    )
    init.add_argument(
        "--labelled",
        help="index.csv with file,label columns (default: data/ondrejov/index.csv; 'none')",
        default=str(REPO / "data" / "ondrejov" / "index.csv"),
    )
    init.add_argument(
        "--workers", type=int, default=1, help="processes that read and preprocess the pool"
    )
    train = command("train", "balance, train, predict the pool, pick candidates", _train)
    train.add_argument("--review", type=int, default=50, help="random emission/double-peak")
    train.add_argument("--uncertain", type=int, default=50, help="highest-entropy spectra")
    train.add_argument("--synthetic-per-class", type=int, default=0)
    train.add_argument("--seed", type=int, default=0)
    command("next", "close the iteration: estimated precision with a Wilson interval", _next)
    export = command("export", "write candidates, labels and probabilities to CSV", _export)
    export.add_argument("--out", required=True, help="CSV path (a precision plot goes beside it)")
    label = command("label", "label the current candidates in the terminal", _label)
    label.add_argument("--labeller", default=os.environ.get("USER", "terminal"))
