"""O-type spectra for the GAN: LAMOST FITS of pipeline class O plus the JHC atlas O stars.

Usage::

    summary = extract_o_type(Path("lamost_fits/"), Path("data/jhc_atlas"),
                             Path("bundles/stellar"), Path("o_type.npz"))

Every spectrum is read with :func:`models.io.read_spectrum` and preprocessed with the
preprocessing of a model bundle (the stellar bundle by default), so the GAN sees exactly the
features the stellar classifier sees. A LAMOST file counts as O when its header says
CLASS = STAR and its SUBCLASS is in the ``O`` group of :func:`survey.catalogue.mk_group`
(``O``, ``O5``, ...; not the mixed ``OB`` template). JHC atlas stars count as O from the
atlas's own spectral type (``index.csv``, column ``mk_letter``).

The output is one ``.npz`` file (no pickled objects): ``features`` float32
(n, n_pix, channels), ``source`` (``lamost`` or ``jhc_atlas``), ``path`` (relative to its
folder), ``object``, ``spectral_type`` and ``preprocess`` (the JSON spec used). When the
folder holds no LAMOST O star, which is the case for every LAMOST file in this repository,
the summary says so and the file holds the atlas spectra only.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.io import SpectrumReadError, read_spectrum
from models.preprocess import build_preprocess
from survey.catalogue import mk_group

SPECTRUM_SUFFIXES = (".fits", ".fits.gz", ".fit", ".fit.gz", ".fts")


@dataclass
class OTypeSummary:
    """What :func:`extract_o_type` found and wrote."""

    out: str
    lamost_files_scanned: int
    lamost_o: int
    jhc_o: int
    unreadable: dict[str, str] = field(default_factory=dict)
    lamost_classes: dict[str, int] = field(default_factory=dict)
    note: str = ""


@dataclass
class _Collected:
    features: list[np.ndarray] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    file: list[str] = field(default_factory=list)
    object: list[str] = field(default_factory=list)
    spectral_type: list[str] = field(default_factory=list)

    def add(self, features, source, file, name, spectral_type) -> None:
        self.features.append(features)
        self.source.append(source)
        self.file.append(file)
        self.object.append(name)
        self.spectral_type.append(spectral_type)


def spectrum_files(folder: Path) -> list[Path]:
    """Files under ``folder`` (recursively) whose names end like FITS spectra, sorted."""
    return sorted(
        p
        for p in Path(folder).rglob("*")
        if p.is_file() and p.name.lower().endswith(SPECTRUM_SUFFIXES)
    )


def bundle_preprocess(bundle: Path):
    """The preprocessing object of a bundle, from its ``bundle.json`` (no JAX import)."""
    card = json.loads((Path(bundle) / "bundle.json").read_text())
    return build_preprocess(card["preprocess"]), card["preprocess"]


def _scan_lamost(folder: Path, preprocess, collected: _Collected, summary: OTypeSummary):
    """Add the LAMOST O stars of ``folder``; count every file's group; record failures."""
    for path in spectrum_files(folder):
        summary.lamost_files_scanned += 1
        try:
            spectrum = read_spectrum(path)
        except SpectrumReadError as error:
            summary.unreadable[str(path)] = str(error)
            continue
        meta = spectrum.meta
        if meta.get("source") != "lamost":
            summary.unreadable[str(path)] = f"not a LAMOST spectrum (source {meta.get('source')})"
            continue
        group = mk_group(meta.get("pipeline_class"), meta.get("pipeline_subclass"))
        summary.lamost_classes[group] = summary.lamost_classes.get(group, 0) + 1
        if group == "O":
            collected.add(
                preprocess.apply(spectrum),
                "lamost",
                str(path.relative_to(folder)),
                meta.get("object_id") or str(meta.get("obsid") or path.name),
                str(meta.get("pipeline_subclass")),
            )
            summary.lamost_o += 1


def _add_jhc(jhc_dir: Path, preprocess, collected: _Collected, summary: OTypeSummary) -> None:
    """Add the JHC atlas stars whose ``mk_letter`` in ``index.csv`` is O."""
    with open(Path(jhc_dir) / "index.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row["mk_letter"].strip() == "O"]
    for row in rows:
        spectrum = read_spectrum(Path(jhc_dir) / row["file"])
        spectral_type = f"{row['sptype'].strip()}{row.get('lumclass', '').strip()}"
        collected.add(
            preprocess.apply(spectrum), "jhc_atlas", row["file"], row["star"].strip(), spectral_type
        )
        summary.jhc_o += 1


def extract_o_type(
    fits_dir: Path | None, jhc_dir: Path | None, bundle: Path, out: Path
) -> OTypeSummary:
    """Write the O-type spectra of a LAMOST folder and of the JHC atlas to one ``.npz``.

    Args:
        fits_dir: folder of LAMOST FITS (searched recursively), or None.
        jhc_dir: the JHC atlas folder (``index.csv`` + ``spectra/``), or None.
        bundle: the model bundle whose preprocessing is applied (its ``bundle.json``).
        out: the ``.npz`` file to write (must not exist; written atomically).
    """
    out = Path(out)
    if out.exists():
        raise FileExistsError(f"{out} exists; choose a new output file")
    preprocess, spec = bundle_preprocess(bundle)
    collected = _Collected()
    summary = OTypeSummary(out=str(out), lamost_files_scanned=0, lamost_o=0, jhc_o=0)
    if fits_dir is not None:
        _scan_lamost(Path(fits_dir), preprocess, collected, summary)
    if jhc_dir is not None:
        _add_jhc(Path(jhc_dir), preprocess, collected, summary)
    if not collected.features:
        raise ValueError("no O-type spectrum found: nothing to write")
    summary.note = _note(fits_dir, summary)
    _save_npz(out, collected, spec)
    return summary


def _note(fits_dir: Path | None, summary: OTypeSummary) -> str:
    if fits_dir is None:
        return "no LAMOST folder given: the file holds JHC atlas spectra only"
    if summary.lamost_o == 0:
        return (
            f"no LAMOST O-type spectrum (CLASS=STAR, SUBCLASS O*) among the "
            f"{summary.lamost_files_scanned} files under {fits_dir}: the file holds "
            f"{summary.jhc_o} JHC atlas spectra only"
        )
    return f"{summary.lamost_o} LAMOST and {summary.jhc_o} JHC atlas O-type spectra"


def _save_npz(out: Path, collected: _Collected, spec: dict) -> None:
    """``np.savez`` to a buffer, then write ``.NAME.part`` and rename (no partial file)."""
    buffer = io.BytesIO()
    np.savez(
        buffer,
        features=np.stack(collected.features).astype(np.float32),
        source=np.array(collected.source),
        path=np.array(collected.file),
        object=np.array(collected.object),
        spectral_type=np.array(collected.spectral_type),
        preprocess=np.array(json.dumps(spec)),
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    part = out.with_name(f".{out.name}.part")
    part.write_bytes(buffer.getvalue())
    os.replace(part, out)
