"""Survey subcommands: ``classify-survey``, ``catalogue {split,sample,o-type}``, ``download``.

Usage: ``python -m survey.cli catalogue split my_data3.csv --out by_class`` (or, once hooked
into the main parser with :func:`add_commands`, ``skysort catalogue split ...``).

Each command prints one JSON summary on stdout; progress bars and warnings go to stderr.
Heavy imports (pyarrow, Dask, JAX) happen inside the commands, so ``--help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MK_LETTERS = "O,B,A,F,G,K,M"


def _columns(args: argparse.Namespace):
    from survey.catalogue import CatalogueColumns

    return CatalogueColumns(args.obsid_column, args.class_column, args.subclass_column)


def _split(args: argparse.Namespace) -> int:
    from survey.catalogue import split_catalogue

    summary = split_catalogue(
        Path(args.catalogue),
        Path(args.out),
        _columns(args),
        block_bytes=args.block_mb << 20,
        overwrite=args.overwrite,
    )
    print(json.dumps(asdict(summary)))
    return 0


def _sample(args: argparse.Namespace) -> int:
    from survey.catalogue import sample_catalogue

    groups = tuple(g.strip() for g in args.classes.split(",") if g.strip())
    summary = sample_catalogue(
        Path(args.catalogue),
        Path(args.out),
        per_class=args.per_class,
        seed=args.seed,
        groups=groups,
        columns=_columns(args),
        block_bytes=args.block_mb << 20,
        overwrite=args.overwrite,
    )
    for group in summary.short:
        found = summary.sampled.get(group, 0)
        print(f"warning: {group}: only {found} rows of {args.per_class}", file=sys.stderr)
    print(json.dumps(asdict(summary)))
    return 0


def _o_type(args: argparse.Namespace) -> int:
    from survey.otype import extract_o_type

    summary = extract_o_type(
        Path(args.fits_dir) if args.fits_dir else None,
        None if args.no_jhc else Path(args.jhc_dir),
        Path(args.bundle),
        Path(args.out),
    )
    print(f"note: {summary.note}", file=sys.stderr)
    print(json.dumps(asdict(summary)))
    return 0


def _download(args: argparse.Namespace) -> int:
    from survey.download import DownloadConfig, download_spectra, read_obsids

    obsids = [int(o) for o in args.obsid] + (read_obsids(Path(args.obsids)) if args.obsids else [])
    if not obsids:
        raise SystemExit("download: give obsids as arguments or with --obsids FILE")
    given = {
        "base_url": args.base_url,
        "release": args.release,
        "url_template": args.url_template,
        "token": args.token,
    }
    config = DownloadConfig(
        **{key: value for key, value in given.items() if value is not None},
        workers=args.workers,
        retries=args.retries,
        backoff_s=args.backoff,
        timeout_s=args.timeout,
    )
    results = download_spectra(obsids, Path(args.out), config, progress=not args.quiet)
    failed = [r for r in results if r.status == "failed"]
    for result in failed:
        print(json.dumps(asdict(result)), file=sys.stderr)
    counts = {s: sum(r.status == s for r in results) for s in ("downloaded", "present", "failed")}
    print(json.dumps({"out": args.out, "obsids": len(results), **counts}))
    return 1 if failed else 0


def _classify_survey(args: argparse.Namespace) -> int:
    from survey.bulk import classify_survey

    bundles = None
    if args.bundle:
        card = json.loads((Path(args.bundle) / "bundle.json").read_text())
        bundles = {card["task"]: str(Path(args.bundle).resolve())}
    summary = classify_survey(
        Path(args.input),
        Path(args.output),
        workers=args.workers,
        scheduler=args.scheduler,
        task=args.task,
        bundles=bundles,
        partition_size=args.partition_size,
        progress=not args.quiet,
    )
    print(json.dumps(asdict(summary)))
    return 1 if summary.errors else 0


def _catalogue_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("catalogue", help="catalogue file (| or , separated, plain or gzipped)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="replace earlier outputs")
    parser.add_argument("--block-mb", type=int, default=4, help="read block size (MiB)")
    parser.add_argument("--obsid-column", default="obsid")
    parser.add_argument("--class-column", default="class")
    parser.add_argument("--subclass-column", default="subclass")


def _add_catalogue(sub) -> None:
    catalogue = sub.add_parser("catalogue", help="LAMOST catalogue tools (streaming)")
    actions = catalogue.add_subparsers(dest="action", required=True)
    split = actions.add_parser("split", help="one Parquet file per MK class group")
    _catalogue_options(split)
    split.set_defaults(func=_split)
    sample = actions.add_parser("sample", help="stratified random obsid sample per class")
    _catalogue_options(sample)
    sample.add_argument("--per-class", type=int, required=True, help="rows per class")
    sample.add_argument("--seed", type=int, default=0)
    sample.add_argument("--classes", default=MK_LETTERS, help=f"groups (default {MK_LETTERS})")
    sample.set_defaults(func=_sample)
    o_type = actions.add_parser("o-type", help="O-type spectra for the GAN, into one .npz")
    o_type.add_argument("--fits-dir", help="folder of LAMOST FITS (searched recursively)")
    o_type.add_argument("--jhc-dir", default=str(REPO / "data" / "jhc_atlas"))
    o_type.add_argument("--no-jhc", action="store_true", help="leave out the JHC atlas")
    o_type.add_argument("--bundle", default=str(REPO / "bundles" / "stellar"))
    o_type.add_argument("--out", required=True, help="the .npz file to write (new)")
    o_type.set_defaults(func=_o_type)


def _add_download(sub) -> None:
    download = sub.add_parser("download", help="download LAMOST spectra by obsid (resumable)")
    download.add_argument("obsid", nargs="*", help="obsids (or use --obsids FILE)")
    download.add_argument("--obsids", help="text file, one obsid per line")
    download.add_argument("--out", required=True, help="output folder")
    download.add_argument("--base-url", help="archive root (default https://www.lamost.org)")
    download.add_argument("--release", help="data release path (default dr10/v2.0; e.g. dr6/v2)")
    download.add_argument(
        "--url-template", help="default {base_url}/{release}/spectrum/fits/{obsid}"
    )
    download.add_argument("--token", help="archive token for proprietary data")
    download.add_argument("--workers", type=int, default=4, help="concurrent downloads")
    download.add_argument("--retries", type=int, default=5)
    download.add_argument("--backoff", type=float, default=1.0, help="first backoff (s)")
    download.add_argument("--timeout", type=float, default=60.0, help="socket timeout (s)")
    download.add_argument("--quiet", action="store_true", help="no progress bar")
    download.set_defaults(func=_download)


def _add_classify_survey(sub) -> None:
    survey = sub.add_parser(
        "classify-survey", help="classify a folder or list of spectra on Dask into Parquet"
    )
    survey.add_argument("--input", required=True, help="folder of FITS, or a list file")
    survey.add_argument("--output", required=True, help="Parquet folder (re-runs resume)")
    where = survey.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=2, help="local worker processes")
    where.add_argument("--scheduler", help="existing Dask scheduler, e.g. tcp://host:8786")
    survey.add_argument("--task", choices=("auto", "stellar"), default="auto")
    survey.add_argument("--bundle", help="bundle folder (default: the bundled models)")
    survey.add_argument("--partition-size", type=int, default=256, help="files per task")
    survey.add_argument("--quiet", action="store_true", help="no progress bar")
    survey.set_defaults(func=_classify_survey)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``classify-survey``, ``catalogue`` and ``download`` on a subparsers object."""
    _add_classify_survey(subparsers)
    _add_catalogue(subparsers)
    _add_download(subparsers)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m survey.cli", description="LAMOST survey tools of skysort."
    )
    add_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
