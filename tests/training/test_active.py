"""Active learning: the loop end to end with a scripted oracle (labels from a file), the
Wilson interval, and a database that survives a crash between and inside steps."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from models.active_store import connect
from models.halpha import HALPHA_LABELS
from tests.conftest import REPO_ROOT
from training import active
from training.active import (
    ActiveConfig,
    ActiveStateError,
    add_label,
    candidate_rows,
    close_iteration,
    init_pool,
    predict_pool,
    register_spectra,
    train_iteration,
    wilson_interval,
)
from training.active_report import export_candidates
from training.halpha_generator import generate_profiles

LAMOST = "lamost/dr1_learninglamost"
BUNDLE = REPO_ROOT / "bundles" / "halpha"


def _small_pool(tmp_path, data_dir, n_real=8):
    """A database: n_real real LAMOST files (+1 with a masked window) and the seeds."""
    files = sorted((data_dir / LAMOST).glob("*.fits"))[:n_real]
    files.append(data_dir / LAMOST / "spec-55862-B6212_sp06-117.fits")
    listing = tmp_path / "pool.txt"
    listing.write_text("\n".join(str(f) for f in files))
    db = tmp_path / "state" / "active.sqlite"
    summary = init_pool(db, [listing], data_dir / "ondrejov" / "index.csv")
    return db, summary


def _simulated(db, n_per_class, seed):
    spectra, labels = generate_profiles(n_per_class, seed, "lamost")
    refs = [f"sim/{seed}/{i}" for i in range(len(spectra))]
    register_spectra(db, zip(refs, spectra, strict=True))
    return {ref: HALPHA_LABELS[label] for ref, label in zip(refs, labels, strict=True)}


def test_wilson_interval_matches_hand_computed_values():
    assert wilson_interval(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)
    assert wilson_interval(0, 5) == pytest.approx((0.0, 0.4345), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_init_registers_pool_and_seed_labels(tmp_path, data_dir):
    db, summary = _small_pool(tmp_path, data_dir)
    assert summary["pool"] == 8 and summary["seed_labelled"] == 26
    assert any("sp06-117" in e and "no good pixel" in e for e in summary["errors"])
    with connect(db) as conn:
        labels = conn.execute("SELECT label, labeller FROM labels").fetchall()
    assert len(labels) == 26 and {r["labeller"] for r in labels} == {"index.csv"}
    with pytest.raises(ActiveStateError, match="exists"):
        init_pool(db, [], None)
    with pytest.raises(ActiveStateError, match="not trained"):
        close_iteration(db)


def test_loop_end_to_end_with_a_scripted_oracle(tmp_path, data_dir):
    db, _ = _small_pool(tmp_path, data_dir)
    truth = _simulated(db, 40, seed=5)
    oracle_file = tmp_path / "oracle.csv"
    with open(oracle_file, "w", newline="") as handle:
        csv.writer(handle).writerows([("ref", "label"), *truth.items()])
    oracle = {r["ref"]: r["label"] for r in csv.DictReader(oracle_file.read_text().splitlines())}
    config = ActiveConfig(review_per_iteration=12, uncertain_per_iteration=12, target_steps=150)
    closed = []
    for number in (1, 2):
        trained = train_iteration(db, config)
        assert trained["iteration"] == number and trained["pool"] == 8 + 160
        assert sum(trained["predicted_counts"].values()) == 168
        with pytest.raises(ActiveStateError, match="already trained"):
            train_iteration(db, config)
        for row in candidate_rows(db):
            add_label(db, row["spectrum_id"], oracle.get(row["ref"], "skip"), "oracle")
        assert candidate_rows(db) == []
        closed.append(close_iteration(db))
    assert trained["trained_on"] > 26  # the seeds plus the first round's non-skip labels
    for result in closed:
        low, high = result["wilson_95"]
        assert result["reviewed"] > 0 and low <= result["precision"] <= high
    exported = export_candidates(db, tmp_path / "out" / "candidates.csv")
    rows = list(csv.DictReader(Path(exported["csv"]).read_text().splitlines()))
    assert len(rows) == exported["rows"] > 24 and {r["kind"] for r in rows} == {
        "review",
        "uncertain",
    }
    assert [r["label"] for r in rows] == [oracle.get(r["ref"], "skip") for r in rows]
    assert all(abs(sum(float(r[f"p_{k}"]) for k in HALPHA_LABELS) - 1) < 1e-3 for r in rows)
    assert (tmp_path / "out" / "candidates_precision.png").stat().st_size > 5000
    with connect(db) as conn:
        open_rows = conn.execute("SELECT number FROM iterations WHERE closed_at IS NULL")
        assert [r["number"] for r in open_rows] == [3]


def test_a_crash_inside_a_step_rolls_it_back_and_keeps_labels(tmp_path, data_dir, monkeypatch):
    db, _ = _small_pool(tmp_path, data_dir)
    real_now = active.now

    def crash_at_commit():  # called while the predictions are being recorded
        raise KeyboardInterrupt

    monkeypatch.setattr(active, "now", crash_at_commit)
    with pytest.raises(KeyboardInterrupt):
        predict_pool(db, BUNDLE, ActiveConfig(review_per_iteration=3, uncertain_per_iteration=3))
    with connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
        assert conn.execute("SELECT trained_at FROM iterations").fetchone()[0] is None
    monkeypatch.setattr(active, "now", real_now)
    predict_pool(db, BUNDLE, ActiveConfig(review_per_iteration=3, uncertain_per_iteration=3))
    first = candidate_rows(db)[0]
    add_label(db, first["spectrum_id"], "emission", "tester")
    monkeypatch.setattr(active, "wilson_interval", lambda *a: (_ for _ in ()).throw(OSError))
    with pytest.raises(OSError):
        close_iteration(db)
    with connect(db) as conn:
        iterations = conn.execute("SELECT number, closed_at FROM iterations").fetchall()
        assert [(r["number"], r["closed_at"]) for r in iterations] == [(1, None)]
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 27


def test_killed_terminal_labelling_loses_no_label(tmp_path, data_dir):
    db, _ = _small_pool(tmp_path, data_dir)
    predict_pool(db, BUNDLE, ActiveConfig(review_per_iteration=3, uncertain_per_iteration=5))
    command = [sys.executable, "-m", "skysort.cli", "active", "label", "--db", str(db)]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=REPO_ROOT, env=env, text=True
    )
    process.stdin.write("e\nx\nn\n")  # 'x' is not a key: asked again
    process.stdin.flush()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with connect(db) as conn:
            given = conn.execute("SELECT label FROM labels WHERE iteration = 1").fetchall()
        if len(given) == 2:
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # a crash in the middle of labelling
    process.wait(timeout=10)
    assert [r["label"] for r in given] == ["emission", "noise"]
    with connect(db) as conn:
        assert conn.execute("SELECT COUNT(*) FROM labels").fetchone()[0] == 28
    assert len(candidate_rows(db)) == len(candidate_rows(db, unlabelled_only=False)) - 2


def test_cli_active_commands(tmp_path, data_dir, capsys):
    from skysort.cli import main

    db = tmp_path / "cli.sqlite"
    pool = str(data_dir / LAMOST / "spec-55862-B6212_sp06-008.fits")
    assert main(["active", "init", "--pool", pool, "--db", str(db)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["pool"] == 1 and summary["seed_labelled"] == 26
    assert main(["active", "next", "--db", str(db)]) == 2
    assert "not trained; run `skysort active train`" in capsys.readouterr().err
    out = tmp_path / "c.csv"
    assert main(["active", "export", "--db", str(db), "--out", str(out)]) == 0
    assert out.read_text().startswith("iteration,kind,rank,spectrum_id,ref")
    assert np.isfinite(json.loads(capsys.readouterr().out)["rows"])
