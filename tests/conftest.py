"""Shared fixtures: the repository's real data folder and helpers that derive broken files.

Usage (in a test)::

    def test_x(data_dir, derive_file):
        broken = derive_file(data_dir / "lamost/.../spec.fits", lambda raw: raw[:4000])
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The repository's ``data/`` folder (real spectra with PROVENANCE)."""
    return REPO_ROOT / "data"


@pytest.fixture
def write_file(tmp_path: Path) -> Callable[[str, bytes], Path]:
    """Write ``content`` to ``tmp_path / name`` and return the path."""

    def write(name: str, content: bytes) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        return path

    return write


@pytest.fixture
def derive_file(write_file: Callable[[str, bytes], Path]) -> Callable[..., Path]:
    """Copy a real file into tmp_path through a bytes -> bytes edit (truncate, corrupt...).

    ``derive_file(source, edit, name=None)``; the copy keeps the source's name by default.
    """

    def derive(source: Path, edit: Callable[[bytes], bytes], name: str | None = None) -> Path:
        return write_file(name or source.name, edit(source.read_bytes()))

    return derive


@pytest.fixture
def gzip_copy(write_file: Callable[[str, bytes], Path]) -> Callable[[Path], Path]:
    """A gzip-compressed copy of a file, named ``<name>.gz`` in tmp_path."""

    def compress(source: Path) -> Path:
        return write_file(source.name + ".gz", gzip.compress(source.read_bytes()))

    return compress


@pytest.fixture(scope="session")
def stellar_bundle() -> Path:
    """The committed default stellar bundle."""
    path = REPO_ROOT / "bundles" / "stellar"
    assert (path / "bundle.json").is_file(), "default stellar bundle missing: run `make models`"
    return path


@pytest.fixture(scope="session")
def stellar_predictor(stellar_bundle):
    from models.bundle import load_bundle

    return load_bundle(stellar_bundle)


@pytest.fixture(scope="session")
def stellar_test_rows(data_dir):
    """Real LAMOST spectra of the documented test split (never trained on)."""
    from training.stellar_data import load_manifest

    rows = load_manifest(data_dir / "manifests" / "stellar.csv")
    return [row for row in rows if row.split == "test"]
