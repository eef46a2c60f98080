"""prepare_many: the same results as prepare, file by file, for any mix of inputs."""

from pathlib import Path

import numpy as np
import pytest

import models.prepare as prepare_module
from models.halpha import HalphaPreprocess
from models.image_preprocess import GalaxyPreprocess
from models.prepare import prepare, prepare_many
from models.preprocess import StellarPreprocess

PREPROCESSORS = {
    "stellar": StellarPreprocess(),
    "halpha": HalphaPreprocess(),
    "galaxy": GalaxyPreprocess(),
}


@pytest.fixture
def mixed_inputs(data_dir, derive_file, write_file) -> list[Path]:
    lamost = sorted((data_dir / "lamost").rglob("spec-*.fits*"))[:20]
    image = next((data_dir / "galaxy" / "images").glob("*.jpeg"))
    return [
        *lamost[:10],
        derive_file(lamost[10], lambda raw: raw[:4000], "cut.fits"),  # truncated
        image,  # a galaxy image among spectra (auto: the galaxy task)
        sorted((data_dir / "jhc_mk_dwarfs").glob("*.txt"))[0],
        write_file("empty.fits", b""),
        data_dir / "sdss" / "spec-0266-51602-0001.fits",
        write_file("far.csv", b"12000,1\n12001,1\n12002,1\n"),  # no flux on the grid
        *lamost[10:],
    ]


@pytest.mark.parametrize("task", ["auto", "stellar", "halpha"])
def test_prepare_many_equals_prepare(mixed_inputs, task):
    many = prepare_many([(path, None) for path in mixed_inputs], PREPROCESSORS, task)
    assert len(many) == len(mixed_inputs)
    for path, got in zip(mixed_inputs, many, strict=True):
        expected = prepare(path, PREPROCESSORS, task)
        assert (got.file, got.task, got.error, got.warnings) == (
            expected.file,
            expected.task,
            expected.error,
            expected.warnings,
        ), path.name
        if expected.features is None:
            assert got.features is None
        else:
            assert np.array_equal(got.features, expected.features), path.name
    errors = {Path(p.file).name: p.error for p in many if p.error}
    assert "cut.fits" in errors and "empty.fits" in errors
    if task != "halpha":
        assert "no flux inside" in errors["far.csv"]
    assert sum(p.error is None for p in many) >= 20


def test_prepare_many_reads_bytes_in_memory(mixed_inputs):
    items = [(Path("upload") / p.name, p.read_bytes()) for p in mixed_inputs]
    many = prepare_many(items, PREPROCESSORS, "auto")
    on_disk = prepare_many([(p, None) for p in mixed_inputs], PREPROCESSORS, "auto")
    for got, expected in zip(many, on_disk, strict=True):
        assert got.task == expected.task and (got.error is None) == (expected.error is None)
        if expected.features is not None:
            assert np.array_equal(got.features, expected.features)


def test_a_reader_fault_costs_only_its_file(mixed_inputs, monkeypatch):
    real = prepare_module.read_spectrum
    victim = mixed_inputs[3]

    def faulty(path, data=None):
        if Path(path) == victim:
            raise RuntimeError("reader bug")
        return real(path, data)

    monkeypatch.setattr(prepare_module, "read_spectrum", faulty)
    items = [(path, None) for path in mixed_inputs]
    with pytest.raises(RuntimeError, match="reader bug"):
        prepare_many(items, PREPROCESSORS, "stellar")
    faults = []

    def on_fault(path, error):
        faults.append((path, str(error)))
        return prepare_module.Prepared(file=str(path), error=f"{path.name}: fault")

    many = prepare_many(items, PREPROCESSORS, "stellar", on_fault=on_fault)
    assert faults == [(victim, "reader bug")]
    assert many[3].error == f"{victim.name}: fault" and many[3].features is None
    assert many[2].features is not None and many[4].features is not None


def test_keep_freed_memory_sets_glibc_thresholds_or_says_it_cannot():
    import ctypes.util

    from models.prepare import keep_freed_memory

    is_glibc = ctypes.util.find_library("c") == "libc.so.6"
    assert keep_freed_memory() is is_glibc
