"""The galaxy manifest (which image, which label, which split) and the repo's image copies.

Usage::

    rows = load_manifest(DEFAULT_MANIFEST)              # list[GalaxyRow]
    train = rows_in(rows, ("train",))
    # how data/manifests/galaxy.csv and data/galaxy/images were made (see PROVENANCE.txt):
    rows = assign_splits(load_manifest(shared / "labels.csv"), seed=0)
    write_manifest(rows, DEFAULT_MANIFEST)
    copy_centre_crops(rows, shared, DEFAULT_IMAGES, margin=96)

Labels: Galaxy Zoo 1's most specific class (elliptical, spiral_cw, spiral_acw, edge_on) is
reduced to the binary ``label`` elliptical | spiral; edge-on disks count as spiral.
"""

from __future__ import annotations

import csv
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

REPO_DATA = Path(__file__).resolve().parents[1] / "data"
DEFAULT_IMAGES = REPO_DATA / "galaxy"
DEFAULT_MANIFEST = REPO_DATA / "manifests" / "galaxy.csv"
LABELS = ("elliptical", "spiral")


@dataclass(frozen=True)
class GalaxyRow:
    """One labelled image; ``file`` is relative to the image folder."""

    file: str
    objid: str
    gz1_class: str
    gz1_class_name: str
    label: str
    split: str = "all"


def load_manifest(path: str | Path) -> list[GalaxyRow]:
    """Rows of a galaxy manifest, or of a labels.csv in the shared staging format.

    A ``binary_label`` column is read as ``label``; without a ``split`` column every row's
    split is ``"all"``.

    Raises:
        ValueError: a label outside :data:`LABELS`.
    """
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    names = {f.name for f in fields(GalaxyRow)}
    rows = []
    for record in records:
        if "binary_label" in record and "label" not in record:
            record["label"] = record.pop("binary_label")
        row = GalaxyRow(**{k: v for k, v in record.items() if k in names})
        if row.label not in LABELS:
            raise ValueError(f"{path}: label {row.label!r} of {row.file} is not one of {LABELS}")
        rows.append(row)
    return rows


def rows_in(rows: list[GalaxyRow], splits: tuple[str, ...]) -> list[GalaxyRow]:
    """Rows whose split is one of ``splits`` (``"all"`` selects every row)."""
    if "all" in splits:
        return list(rows)
    return [row for row in rows if row.split in splits]


def assign_splits(
    rows: list[GalaxyRow], seed: int = 0, val_fraction: float = 0.15, test_fraction: float = 0.15
) -> list[GalaxyRow]:
    """Stratified random train/val/test split by Galaxy Zoo class, seeded.

    Within each ``gz1_class`` the rows are sorted by file, permuted with
    ``numpy.random.default_rng(seed)``, and the first round(test_fraction * n) go to
    ``test``, the next round(val_fraction * n) to ``val``, the rest to ``train``.
    """
    rng = np.random.default_rng(seed)
    out = []
    for gz1 in sorted({row.gz1_class for row in rows}):
        group = sorted((row for row in rows if row.gz1_class == gz1), key=lambda r: r.file)
        order = rng.permutation(len(group))
        n_test = round(test_fraction * len(group))
        n_val = round(val_fraction * len(group))
        for rank, index in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            out.append(replace(group[index], split=split))
    return sorted(out, key=lambda r: r.file)


def write_manifest(rows: list[GalaxyRow], path: Path) -> None:
    """Write rows as CSV (refuses to overwrite an existing file)."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; remove it first to rebuild the manifest")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([f.name for f in fields(GalaxyRow)])
        writer.writerows(astuple(row) for row in rows)


def copy_centre_crops(
    rows: list[GalaxyRow], source_dir: Path, target_dir: Path, margin: int = 96
) -> int:
    """Save the centre of each JPEG with the first ``margin`` pixels of every side cut off.

    The crop keeps the frame centre (side = 2 * (centre - margin) + 1 for an odd frame) and
    its top-left corner on the 16-pixel JPEG block grid when ``margin`` is a multiple of 16;
    it is re-encoded with the source's quantisation tables and chroma subsampling, so the
    DCT blocks line up and the pixels differ from the source by ~0.02/255 on average. No
    resampling: pixels keep their scale, so the preprocessing measures the same galaxy size.
    Returns the number of bytes written.
    """
    written = 0
    for row in rows:
        target = Path(target_dir) / row.file
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(Path(source_dir) / row.file) as picture:
            width, height = picture.size
            box = (margin, margin, width - margin, height - margin)
            crop = picture.crop(box)
            crop.save(
                target,
                format="JPEG",
                qtables=picture.quantization,
                subsampling=JpegImagePlugin.get_sampling(picture),
            )
        written += target.stat().st_size
    return written
