"""Catalogue split and stratified sampling on the real LAMOST DR1 catalogue extract.

The extract (data/lamost/dr1_catalog_extract/my_data3.csv, 3,165 rows) is all STAR:
F 1280, G 1075, K 763, A 47 (PROVENANCE); these counts are what the tools must find.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from survey.catalogue import mk_group, read_batches, sample_catalogue, split_catalogue

EXPECTED = {"A": 47, "F": 1280, "G": 1075, "K": 763}


@pytest.fixture(scope="module")
def extract(data_dir: Path) -> Path:
    return data_dir / "lamost" / "dr1_catalog_extract" / "my_data3.csv"


@pytest.fixture(scope="module")
def extract_rows(extract: Path) -> list[dict[str, str]]:
    with open(extract, newline="") as handle:
        return list(csv.DictReader(handle))


def _obsids_of(rows, letter: str) -> set[int]:
    return {int(r["obsid"]) for r in rows if r["subclass"].startswith(letter)}


@pytest.mark.parametrize(
    ("object_class", "subclass", "group"),
    [
        ("STAR", "G5", "G"),
        ("STAR", "O5", "O"),
        ("STAR", "A3IV", "A"),
        ("STAR", "dM0", "M"),
        ("STAR", "gM3", "M"),
        ("STAR", "sdM1", "M"),
        ("STAR", "M2", "M"),
        ("STAR", "OB", "star_other"),
        ("STAR", "WD", "star_other"),
        ("STAR", "DoubleStar", "star_other"),
        ("GALAXY", "", "galaxy"),
        ("QSO", "", "qso"),
        ("Unknown", "Non", "unknown"),
    ],
)
def test_mk_group(object_class, subclass, group):
    assert mk_group(object_class, subclass) == group


def test_split_counts_and_rows_match_the_extract(extract, extract_rows, tmp_path):
    summary = split_catalogue(extract, tmp_path / "split")
    assert summary.rows == 3165
    assert summary.counts == EXPECTED
    for letter, count in EXPECTED.items():
        table = pq.read_table(tmp_path / "split" / f"{letter}.parquet")
        assert table.num_rows == count
        assert set(table.column("obsid").to_pylist()) == _obsids_of(extract_rows, letter)
        assert all(s.startswith(letter) for s in table.column("subclass").to_pylist())
    f_table = pq.read_table(tmp_path / "split" / "F.parquet")
    first = next(r for r in extract_rows if r["subclass"].startswith("F"))
    row = f_table.filter(f_table.column("obsid").to_numpy() == int(first["obsid"])).to_pylist()[0]
    assert row["teff"] == pytest.approx(float(first["teff"]))
    assert row["designation"] == first["designation"]
    assert row["filename"] == first["filename"]
    assert len(f_table.schema) == len(extract_rows[0])
    assert (tmp_path / "split" / "split.json").is_file()
    assert not list((tmp_path / "split").glob(".*part"))


def test_split_of_pipe_separated_gzip_with_tiny_blocks_is_identical(
    extract, extract_rows, tmp_path
):
    """LAMOST's own format ('|', gzipped); 8 KiB blocks put ~16 rows in each batch."""
    piped = tmp_path / "catalogue.dat"
    with gzip.open(piped, "wt", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(extract_rows[0]), delimiter="|")
        writer.writeheader()
        writer.writerows(extract_rows)
    split_catalogue(extract, tmp_path / "plain")
    summary = split_catalogue(piped, tmp_path / "piped", block_bytes=8 << 10)
    assert summary.counts == EXPECTED
    for letter in EXPECTED:
        plain = pq.read_table(tmp_path / "plain" / f"{letter}.parquet")
        other = pq.read_table(tmp_path / "piped" / f"{letter}.parquet")
        assert other.schema == plain.schema
        assert other.equals(plain)


def test_split_refuses_to_overwrite(extract, tmp_path):
    split_catalogue(extract, tmp_path / "split")
    with pytest.raises(FileExistsError, match="--overwrite"):
        split_catalogue(extract, tmp_path / "split")
    assert split_catalogue(extract, tmp_path / "split", overwrite=True).rows == 3165


def test_missing_class_column_is_named(extract):
    from survey.catalogue import CatalogueColumns

    with pytest.raises(KeyError, match="mk_class"):
        next(read_batches(extract, CatalogueColumns(object_class="mk_class")))


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines()


def test_sample_counts_membership_and_shortfall(extract, extract_rows, tmp_path):
    summary = sample_catalogue(extract, tmp_path / "s", per_class=30, seed=7)
    assert summary.available == EXPECTED
    assert summary.sampled == {"A": 30, "F": 30, "G": 30, "K": 30}
    assert summary.short == {"O": 30, "B": 30, "M": 30}
    everything = []
    for letter in EXPECTED:
        obsids = [int(x) for x in _lines(tmp_path / "s" / f"obsids_{letter}.txt")]
        assert len(obsids) == len(set(obsids)) == 30
        assert set(obsids) <= _obsids_of(extract_rows, letter)
        everything += obsids
    assert [int(x) for x in _lines(tmp_path / "s" / "obsids.txt")] == everything
    table = pacsv.read_csv(tmp_path / "s" / "sample.csv")
    assert table.num_rows == 120
    assert table.column_names[0] == "mk_group"
    assert sorted(table.column("obsid").to_pylist()) == sorted(everything)


def test_sample_takes_a_whole_class_when_it_is_small(extract, extract_rows, tmp_path):
    summary = sample_catalogue(extract, tmp_path / "s", per_class=50, seed=1, groups=("A",))
    assert summary.sampled == {"A": 47} and summary.short == {"A": 3}
    obsids = {int(x) for x in _lines(tmp_path / "s" / "obsids_A.txt")}
    assert obsids == _obsids_of(extract_rows, "A")


def test_sample_seed_reproduces_whatever_the_block_size(extract, tmp_path):
    sample_catalogue(extract, tmp_path / "a", per_class=25, seed=3)
    sample_catalogue(extract, tmp_path / "b", per_class=25, seed=3, block_bytes=8 << 10)
    sample_catalogue(extract, tmp_path / "c", per_class=25, seed=4)
    same = _lines(tmp_path / "a" / "obsids.txt")
    assert same == _lines(tmp_path / "b" / "obsids.txt")
    assert (tmp_path / "a" / "sample.csv").read_bytes() == (
        tmp_path / "b" / "sample.csv"
    ).read_bytes()
    other = _lines(tmp_path / "c" / "obsids.txt")
    assert len(set(same) & set(other)) < len(same) // 2
