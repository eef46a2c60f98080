"""O-type extraction for the GAN from the repository's LAMOST FITS and the JHC atlas.

No real LAMOST O star exists in the data (PROVENANCE), so the real folder must yield the 14
JHC atlas O stars only and say so. The LAMOST path is exercised with copies of a real file
whose header SUBCLASS was rewritten (the flux stays that of the original G star).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from models.io import read_spectrum
from models.preprocess import build_preprocess
from survey.otype import extract_o_type


def test_real_folder_has_no_lamost_o_and_says_so(
    data_dir, stellar_bundle, stellar_predictor, tmp_path
):
    out = tmp_path / "o_type.npz"
    summary = extract_o_type(data_dir / "lamost", data_dir / "jhc_atlas", stellar_bundle, out)
    assert summary.lamost_files_scanned == 125
    assert summary.lamost_o == 0
    assert summary.jhc_o == 14
    assert "no LAMOST O-type spectrum" in summary.note
    assert summary.lamost_classes["F"] == 33 and summary.lamost_classes["M"] == 11
    saved = np.load(out)
    assert saved["features"].shape == (14, *stellar_predictor.feature_shape)
    assert saved["features"].dtype == np.float32
    assert set(saved["source"]) == {"jhc_atlas"}
    assert all(t.startswith("O") for t in saved["spectral_type"])
    card = json.loads((stellar_bundle / "bundle.json").read_text())
    assert json.loads(str(saved["preprocess"])) == card["preprocess"]
    first = data_dir / "jhc_atlas" / str(saved["path"][0])
    expected = build_preprocess(card["preprocess"]).apply(read_spectrum(first))
    np.testing.assert_array_equal(saved["features"][0], expected)


def _relabelled(source: Path, target: Path, subclass: str) -> Path:
    with fits.open(source) as hdus:
        hdus[0].header["SUBCLASS"] = subclass
        hdus.writeto(target)
    return target


def test_lamost_header_o_is_extracted_and_ob_is_not(data_dir, stellar_bundle, tmp_path):
    source = data_dir / "lamost" / "dr6_dr7_laspec" / "spec-58397-EG014118N254444M01_sp03-031.fits"
    folder = tmp_path / "fits"
    (folder / "night1").mkdir(parents=True)
    _relabelled(source, folder / "night1" / "o7.fits", "O7")
    _relabelled(source, folder / "ob.fits", "OB")
    shutil.copy(source, folder / "g3.fits")
    (folder / "notes.fits").write_text("not a FITS file")
    summary = extract_o_type(folder, None, stellar_bundle, tmp_path / "o.npz")
    assert summary.lamost_files_scanned == 4
    assert summary.lamost_o == 1 and summary.jhc_o == 0
    assert summary.lamost_classes == {"G": 1, "O": 1, "star_other": 1}
    assert list(summary.unreadable) == [str(folder / "notes.fits")]
    saved = np.load(tmp_path / "o.npz")
    assert list(saved["path"]) == ["night1/o7.fits"]
    assert list(saved["spectral_type"]) == ["O7"]


def test_existing_output_is_not_overwritten(data_dir, stellar_bundle, tmp_path):
    out = tmp_path / "o.npz"
    out.write_bytes(b"keep")
    with pytest.raises(FileExistsError):
        extract_o_type(None, data_dir / "jhc_atlas", stellar_bundle, out)
    assert out.read_bytes() == b"keep"
