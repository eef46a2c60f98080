"""Text reader: JHC atlas and dwarfs, Pickles (.sed.gz), generic 2-3 column ASCII/CSV."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from models.io import SpectrumReadError, read_spectrum
from models.preprocess import air_to_vacuum


def test_jhc_dwarf_offsets_match_index_csv(data_dir: Path) -> None:
    folder = data_dir / "jhc_mk_dwarfs"
    with open(folder / "index.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 13
    for row in rows:
        spectrum = read_spectrum(folder / row["file"])
        assert spectrum.meta["source"] == "jhc"
        assert spectrum.meta["format"] == "jhc_dwarf_shifted"
        assert spectrum.meta["integer_offset"] == int(row["integer_offset"]), row["file"]
        raw = np.loadtxt(folder / row["file"], skiprows=9)
        np.testing.assert_allclose(spectrum.flux, raw[:, 1] - int(row["integer_offset"]))
        near_5500 = np.abs(spectrum.wavelength - air_to_vacuum(np.array([5500.0]))[0]) < 3
        assert np.median(spectrum.flux[near_5500]) == pytest.approx(1.0, abs=0.1)


def test_jhc_dwarf_title_and_air_to_vacuum(data_dir: Path) -> None:
    spectrum = read_spectrum(data_dir / "jhc_mk_dwarfs/HD10032.txt")
    assert spectrum.meta["object_id"] == "HD10032" and spectrum.meta["spectral_type"] == "F0v"
    assert spectrum.meta["wavelength_medium_original"] == "air"
    assert spectrum.wavelength[0] == pytest.approx(air_to_vacuum(np.array([3510.0]))[0])
    assert spectrum.wavelength.size == 2799


def test_jhc_atlas_is_not_offset(data_dir: Path) -> None:
    path = data_dir / "jhc_atlas/spectra/A0000002.SP"
    spectrum = read_spectrum(path)
    raw = np.loadtxt(path)
    assert spectrum.meta["format"] == "jhc_atlas" and "integer_offset" not in spectrum.meta
    np.testing.assert_array_equal(spectrum.flux, raw[:, 1])
    np.testing.assert_allclose(spectrum.wavelength, air_to_vacuum(raw[:, 0]))
    assert spectrum.flux.max() == pytest.approx(1.0, abs=1e-6)  # normalised to its maximum


@pytest.mark.parametrize("name", ["o5v", "g2v", "m5iii", "wk4iii"])
def test_pickles_gzip_files(data_dir: Path, name: str) -> None:
    spectrum = read_spectrum(data_dir / f"pickles_1998/sed/{name}.sed.gz")
    assert spectrum.meta["source"] == "pickles"
    assert spectrum.wavelength.size == 4773
    assert spectrum.wavelength[0] == 1145.0  # UV (< 2000 A) is vacuum already
    assert spectrum.ivar[0] == 0  # the first row has flux 0: no data
    air = 1145.0 + 5.0 * np.arange(4773)
    at_6565 = int(np.searchsorted(air, 6565.0))
    assert spectrum.wavelength[at_6565] - 6565.0 == pytest.approx(1.81, abs=0.01)
    assert np.all(np.diff(spectrum.wavelength) > 0)
    at_5555 = int(np.searchsorted(air, 5555.0))
    assert spectrum.flux[at_5555] == pytest.approx(1.0, abs=0.05)  # normalised near 5556 A


def test_generic_csv_with_header_and_error_column(data_dir: Path, write_file) -> None:
    source = read_spectrum(
        data_dir / "lamost/dr6_dr7_laspec/spec-58397-EG014118N254444M01_sp03-031.fits"
    )
    good = source.good
    error = 1.0 / np.sqrt(source.ivar[good])
    lines = ["# exported from a LAMOST DR7 spectrum, vacuum wavelengths", "wavelength,flux,error"]
    lines += [
        f"{w:.4f},{f:.6g},{e:.6g}"
        for w, f, e in zip(source.wavelength[good], source.flux[good], error, strict=True)
    ]
    spectrum = read_spectrum(write_file("lamost.csv", "\n".join(lines).encode()))
    assert spectrum.meta["source"] == "text" and spectrum.meta["third_column"] == "error"
    assert spectrum.meta["wavelength_medium_original"] == "vacuum"
    np.testing.assert_allclose(spectrum.wavelength, source.wavelength[good], atol=1e-4)
    np.testing.assert_allclose(spectrum.ivar, source.ivar[good], rtol=1e-5)


def test_generic_whitespace_ivar_header_descending_and_air_hint(data_dir: Path, write_file) -> None:
    raw = np.loadtxt(data_dir / "jhc_atlas/spectra/A0000004.SP")[::-1][:500]
    lines = ["# wavelengths in air", "lambda  flux  ivar"]
    lines += [f"{w:.2f}\t{f:.7f}  4.0" for w, f in raw]
    spectrum = read_spectrum(write_file("descending.dat", "\n".join(lines).encode()))
    assert spectrum.meta["source"] == "text" and spectrum.meta["third_column"] == "ivar"
    assert spectrum.meta["wavelength_medium_original"] == "air"
    assert np.all(np.diff(spectrum.wavelength) > 0)
    np.testing.assert_allclose(spectrum.wavelength, air_to_vacuum(raw[::-1, 0]))
    np.testing.assert_array_equal(spectrum.ivar, 4.0)


def test_generic_two_columns_assume_vacuum(write_file) -> None:
    path = write_file("two.txt", b"4000 1.0\n4001 1.1\n4002 nan\n4003 0.9\n")
    spectrum = read_spectrum(path)
    np.testing.assert_array_equal(spectrum.wavelength, [4000, 4001, 4002, 4003])
    np.testing.assert_array_equal(spectrum.ivar, [1, 1, 0, 1])
    assert spectrum.meta["wavelength_medium_original"] == "unknown (assumed vacuum)"


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"4000 1 2 3\n4001 1 2 3\n", "has 4 columns"),
        (b"4000 1\n4001 abc\n", "line 2 ('4001 abc') is not numeric"),
        (b"4000 1\n4001 1 0.1\n", "line 2 ('4001 1 0.1') has 3 columns"),
        (b"# only a comment\n4000 1\n", "fewer than 2 numeric data lines"),
        (b"4000 1\n4000 2\n", "repeated values"),
        (b"4000 nan\n4001 nan\n", "no usable pixels"),
    ],
)
def test_bad_text_raises_with_reason(write_file, content: bytes, reason: str) -> None:
    path = write_file("bad.txt", content)
    with pytest.raises(SpectrumReadError) as error:
        read_spectrum(path)
    assert str(error.value).startswith("bad.txt: ") and reason in str(error.value)


def test_provenance_text_is_unknown_text_format(data_dir: Path) -> None:
    with pytest.raises(SpectrumReadError, match="PROVENANCE.txt: unknown text format"):
        read_spectrum(data_dir / "jhc_atlas/PROVENANCE.txt")
