"""Download SDSS galaxy cutouts with Galaxy Zoo 1 labels from the public SkyServer (no login).

Usage::

    python scripts/sdss_galaxies.py --out data/sdss_gz1 --n 200 --type both \\
        --z-min 0.02 --z-max 0.07 --g-flux-min 100 --dr 17 --scale-factor 0.024

Writes OUT/images/{dr7objid}.jpeg, OUT/labels.csv (the galaxy manifest format: file, objid,
gz1_class, gz1_class_name, label, plus the SQL columns) and OUT/query.json. Re-running
with the same OUT resumes: complete images are not downloaded again.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from training.sdss_acquire import (
    DEFAULT_BASE_URL,
    GalaxyQuery,
    RateLimiter,
    SkyServer,
    SkyServerError,
    download_cutouts,
)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--n", type=int, default=100, help="number of galaxies")
    parser.add_argument("--type", choices=("spiral", "elliptical", "both"), default="both")
    parser.add_argument("--z-min", type=float, default=0.0, help="minimum redshift")
    parser.add_argument("--z-max", type=float, default=0.1, help="maximum redshift")
    parser.add_argument("--g-flux-min", type=float, help="minimum g Petrosian flux (nanomaggies)")
    parser.add_argument("--g-flux-max", type=float, help="maximum g Petrosian flux (nanomaggies)")
    parser.add_argument("--dr", type=int, default=17, help="SDSS data release (>= 8)")
    parser.add_argument(
        "--scale-factor",
        type=float,
        default=0.024,
        help="cutout arcsec/pixel per arcsec of petroR90_r (GZ1: 0.024)",
    )
    parser.add_argument("--size", type=int, default=423, help="cutout side in pixels")
    parser.add_argument("--base-url", default=DEFAULT_BASE_URL, help="SkyServer root URL")
    parser.add_argument("--rate", type=float, default=5.0, help="at most this many requests/s")
    parser.add_argument("--retries", type=int, default=4)
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    query = GalaxyQuery(
        n_galaxies=args.n, kind=args.type, z_min=args.z_min, z_max=args.z_max,
        g_flux_min=args.g_flux_min, g_flux_max=args.g_flux_max, data_release=args.dr,
        scale_factor=args.scale_factor, image_size=args.size,
    )  # fmt: skip
    client = SkyServer(
        base_url=args.base_url, timeout=args.timeout, max_retries=args.retries,
        limiter=RateLimiter(min_interval=1.0 / args.rate),
    )  # fmt: skip
    try:
        rows = client.select_galaxies(query)
    except SkyServerError as error:
        print(f"query failed: {error}", file=sys.stderr)
        return 2
    print(f"{len(rows)} galaxies selected", file=sys.stderr)
    report = download_cutouts(rows, args.out, client, query)
    print(
        f"downloaded {report.downloaded}, already there {report.skipped}, "
        f"failed {len(report.failed)}; labels in {args.out / 'labels.csv'}",
        file=sys.stderr,
    )
    for name, reason in report.failed.items():
        print(f"  {name}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
