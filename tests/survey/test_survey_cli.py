"""The survey subcommands through their argparse entry (``python -m survey.cli``)."""

from __future__ import annotations

import json

import numpy as np

from survey.cli import main


def test_catalogue_split_and_sample_commands(data_dir, tmp_path, capsys):
    extract = str(data_dir / "lamost" / "dr1_catalog_extract" / "my_data3.csv")
    assert main(["catalogue", "split", extract, "--out", str(tmp_path / "split")]) == 0
    split = json.loads(capsys.readouterr().out)
    assert split["rows"] == 3165 and split["counts"]["G"] == 1075
    argv = ["catalogue", "sample", extract, "--out", str(tmp_path / "s"), "--per-class", "10"]
    assert main([*argv, "--classes", "A,M", "--seed", "5"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["sampled"] == {"A": 10}
    assert "warning: M: only 0 rows of 10" in captured.err
    assert len((tmp_path / "s" / "obsids.txt").read_text().split()) == 10


def test_o_type_command_says_there_is_no_lamost_o(data_dir, tmp_path, capsys):
    out = tmp_path / "o.npz"
    argv = ["catalogue", "o-type", "--fits-dir", str(data_dir / "lamost" / "dr2_spectraml")]
    assert main([*argv, "--out", str(out)]) == 0
    captured = capsys.readouterr()
    summary = json.loads(captured.out)
    assert (summary["lamost_files_scanned"], summary["lamost_o"], summary["jhc_o"]) == (16, 0, 14)
    assert "no LAMOST O-type spectrum" in captured.err
    assert np.load(out)["features"].shape[0] == 14


def test_commands_hook_into_the_skysort_parser():
    from skysort.cli import build_parser

    parser = build_parser()
    args = parser.parse_args(["catalogue", "sample", "c.csv", "--out", "o", "--per-class", "3"])
    assert (args.func.__name__, args.per_class, args.seed) == ("_sample", 3, 0)
    args = parser.parse_args(["classify-survey", "--input", "d", "--output", "r.parquet"])
    assert (args.workers, args.scheduler, args.partition_size) == (2, None, 256)
    args = parser.parse_args(["classify", "x.fits"])
    assert args.files == ["x.fits"]
