"""``skysort generate``, ``skysort evaluate gan`` and the parser wiring of the GAN commands."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.generate import default_generator_path
from skysort.cli import EVALUATORS, TRAINERS, build_parser, main


def test_gan_is_registered_for_train_and_evaluate():
    assert "gan" in TRAINERS and "gan" in EVALUATORS
    args = build_parser().parse_args(["train", "gan", "--out", "x", "--steps", "5"])
    assert args.steps == 5


def test_generate_fits_is_deterministic(tmp_path: Path):
    first, second = tmp_path / "a.fits", tmp_path / "b.fits"
    assert main(["generate", "--n", "4", "--seed", "3", "--out", str(first)]) == 0
    assert main(["generate", "--n", "4", "--seed", "3", "--out", str(second)]) == 0
    with fits.open(first) as a, fits.open(second) as b:
        assert a[0].data.shape == (4, 1024)
        np.testing.assert_array_equal(a[0].data, b[0].data)
        assert a[0].header["SEED"] == 3 and a[0].header["SYNTHETI"] is True
        assert a["WAVELENGTH"].data.shape == (1024,)


def test_generate_json_to_stdout_and_csv_by_suffix(tmp_path: Path, capsys):
    assert main(["generate", "--n", "2", "--seed", "1"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["n"] == 2 and np.asarray(payload["flux"]).shape == (2, 1024)
    out = tmp_path / "o.csv"
    assert main(["generate", "--n", "2", "--seed", "1", "--out", str(out)]) == 0
    assert out.read_text().startswith("# model: gan-")


@pytest.mark.parametrize(
    "argv, reason",
    [
        (["--n", "0"], "--n must be between"),
        (["--n", "2", "--format", "fits"], "needs --out"),
    ],
)
def test_generate_refuses_bad_requests(argv, reason, capsys):
    assert main(["generate", *argv]) == 2
    assert reason in capsys.readouterr().err


def test_generate_does_not_overwrite(tmp_path: Path, capsys):
    out = tmp_path / "keep.json"
    out.write_text("mine")
    assert main(["generate", "--n", "1", "--out", str(out)]) == 2
    assert out.read_text() == "mine" and "exists" in capsys.readouterr().err


def test_evaluate_gan_prints_and_saves_the_report(tmp_path: Path, capsys):
    report = tmp_path / "report"
    bundle = str(default_generator_path())
    assert main(["evaluate", "gan", "--bundle", bundle, "--report", str(report)]) == 0
    out = capsys.readouterr().out
    assert "O share" in out and "memorisation" in out and "He II 4686" in out
    metrics = json.loads((report / "metrics.json").read_text())
    assert metrics["n"] == 1000 and 0.0 <= metrics["o_share"] <= 1.0
    for name in ("samples.png", "memorisation.png", "mean_spectra.png"):
        assert (report / name).stat().st_size > 0


def test_evaluate_gan_refuses_a_classifier_that_saw_synthetic_spectra(tmp_path: Path):
    from training.gan_eval import check_classifier_never_saw_synthetic

    with pytest.raises(ValueError, match="trained with GAN spectra"):
        check_classifier_never_saw_synthetic({"training": {"balancing": "gan+smote"}}, tmp_path)
    check_classifier_never_saw_synthetic({"training": {"balancing": "smote"}}, tmp_path)
