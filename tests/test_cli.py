"""`skysort classify` end to end: JSON lines, per-file errors, exit codes."""

import json
import subprocess
import sys

import numpy as np
import pytest

from skysort.cli import main


def test_classify_prints_one_json_object_per_file(capsys, data_dir, stellar_test_rows, tmp_path):
    good = [data_dir / row.file for row in stellar_test_rows[:3]]
    broken = tmp_path / "broken.fits"
    broken.write_bytes(b"SIMPLE  =                    T" + b" " * 50)
    code = main(["classify", str(good[0]), str(broken), str(good[1]), "--quiet"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1
    assert [line["file"] for line in lines] == [str(good[0]), str(broken), str(good[1])]
    assert "broken.fits" in lines[1]["error"] and "label" not in lines[1]
    for line in (lines[0], lines[2]):
        assert line["task"] == "stellar"
        assert line["label"] in "OBAFGKM"
        assert sum(line["probabilities"].values()) == pytest.approx(1.0, abs=1e-4)
        assert line["model"].startswith("stellar-")
        assert isinstance(line["warnings"], list)


def test_classify_exit_code_zero_when_all_read(capsys, data_dir, stellar_test_rows):
    code = main(["classify", str(data_dir / stellar_test_rows[0].file), "--quiet"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["label"]


def test_classify_warns_for_a_galaxy_spectrum(capsys, data_dir):
    galaxy = next((data_dir / "sdss").glob("spec-0266-51602-0001.fits"))
    main(["classify", str(galaxy), "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert any("GALAXY" in warning for warning in result["warnings"])


def test_console_script_help_lists_commands():
    out = subprocess.run(
        [sys.executable, "-m", "skysort.cli", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("train", "evaluate", "classify", "serve"):
        assert command in out


def test_classify_warns_about_partial_coverage(capsys, data_dir):
    medium = next((data_dir / "lamost" / "dr6_dr7_laspec").glob("med-*.fits"))
    main(["classify", str(medium), "--quiet"])
    result = json.loads(capsys.readouterr().out)
    assert result["task"] == "stellar"
    assert any("covers" in warning for warning in result["warnings"])


def test_default_bundle_classifies_held_out_spectra(
    capsys, data_dir, stellar_test_rows, stellar_predictor
):
    """The classify path reproduces the bundle's recorded test accuracy (never trained on)."""
    files = [str(data_dir / row.file) for row in stellar_test_rows]
    main(["classify", *files, "--quiet"])
    results = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pairs = zip(results, stellar_test_rows, strict=True)
    accuracy = np.mean([result["label"] == row.mk_class for result, row in pairs])
    assert accuracy == pytest.approx(stellar_predictor.card["metrics"]["accuracy"], abs=1e-3)
    assert accuracy >= 0.7


def test_worker_processes_give_identical_results(capsys, data_dir, stellar_test_rows):
    files = [str(data_dir / row.file) for row in stellar_test_rows[:6]] + ["missing.fits"]
    main(["classify", *files, "--quiet", "--workers", "1"])
    single = capsys.readouterr().out.splitlines()
    main(["classify", *files, "--quiet", "--workers", "2"])
    pooled = capsys.readouterr().out.splitlines()
    assert single == pooled
    assert json.loads(single[-1])["error"] == "missing.fits: file not found"


def test_auto_task_picks_galaxy_for_images(capsys, data_dir, stellar_test_rows):
    image = sorted((data_dir / "galaxy" / "images").glob("*.jpeg"))[0]
    spectrum = data_dir / stellar_test_rows[0].file
    assert main(["classify", str(image), str(spectrum), "--quiet"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["task"] == "galaxy" and first["label"] in ("spiral", "elliptical")
    assert second["task"] == "stellar"
