"""The downloader against a loopback archive serving the repository's real LAMOST FITS.

The server answers ``/<release>/spectrum/fits/<obsid>`` like the LAMOST archive. Obsids are
real: DR1 files get theirs from the real DR1 catalogue extract (their headers have none),
DR6/DR7 files from their OBSID header. Each obsid can be given a plan of behaviours, one per
request: ``ok``, ``slow`` (body in pieces with pauses), ``500``, ``503`` (Retry-After),
``truncate`` (full Content-Length, a third of the body), ``hang`` (no answer before the
client's timeout), ``html`` (a 200 error page) or ``404``.
"""

from __future__ import annotations

import csv
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from survey.cli import main
from survey.download import DownloadConfig, download_one, download_spectra, read_obsids

RELEASE = "dr1/v2.0"
DR6_GZ = 359910161  # spec-57287-KP193637N444141V03_sp10-161.fits.gz (OBSID in header)
DR7 = 677503031  # spec-58397-EG014118N254444M01_sp03-031.fits (OBSID in header)
DR7_MRS = 681001015  # med-58408-TD230151N343645T01_sp01-015.fits (medium resolution)


class Archive:
    """obsid -> bytes, per-obsid behaviour plans, and a log of the requests served."""

    def __init__(self, files: dict[int, bytes]):
        self.files = files
        self.plans: dict[int, list[str]] = {}
        self.requests: list[tuple[int, str]] = []
        self.lock = threading.Lock()

    def behaviour(self, obsid: int) -> str:
        with self.lock:
            plan = self.plans.get(obsid, [])
            behaviour = plan.pop(0) if plan else "ok"
            self.requests.append((obsid, behaviour))
            return behaviour


def _handler(archive: Archive, hang_s: float) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep pytest output clean
            pass

        def do_GET(self) -> None:
            parts = self.path.split("?")[0].strip("/").split("/")
            obsid = int(parts[-1]) if parts[-1].isdigit() else -1
            if "/".join(parts[:-3]) != RELEASE or obsid not in archive.files:
                self.send_error(404, "no such spectrum")
                return
            behaviour = archive.behaviour(obsid)
            body = archive.files[obsid]
            if behaviour in ("404", "500"):
                self.send_error(int(behaviour))
                return
            if behaviour == "503":
                self.send_response(503)
                self.send_header("Retry-After", "0")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            if behaviour == "hang":
                time.sleep(hang_s)
            if behaviour == "html":
                body = b"<html><body>Service temporarily unavailable</body></html>"
            self.send_response(200)
            self.send_header("Content-Type", "application/fits")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if behaviour == "truncate":
                self.wfile.write(body[: len(body) // 3])
                self.close_connection = True
                return
            pieces = 4 if behaviour == "slow" else 1
            step = -(-len(body) // pieces)
            for start in range(0, len(body), step):
                self.wfile.write(body[start : start + step])
                self.wfile.flush()
                if behaviour == "slow":
                    time.sleep(0.1)

    return Handler


class _QuietServer(ThreadingHTTPServer):
    """Ignores only the broken pipe of a client that gave up on a ``hang`` answer."""

    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def served(data_dir) -> dict[int, Path]:
    """obsid -> real file: 75 DR1 files matched through the catalogue, plus DR6/DR7."""
    lamost = data_dir / "lamost"
    with open(lamost / "dr1_catalog_extract" / "my_data3.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    files = {}
    for row in rows:
        path = lamost / "dr1_learninglamost" / row["filename"]
        if path.is_file():
            files[int(row["obsid"])] = path
    laspec = lamost / "dr6_dr7_laspec"
    files[DR6_GZ] = laspec / "spec-57287-KP193637N444141V03_sp10-161.fits.gz"
    files[DR7] = laspec / "spec-58397-EG014118N254444M01_sp03-031.fits"
    files[DR7 + 1] = files[DR7]  # the archive answering with another spectrum
    files[DR7_MRS] = laspec / "med-58408-TD230151N343645T01_sp01-015.fits"
    return files


@pytest.fixture
def archive(served) -> Iterator[tuple[Archive, str]]:
    """A fresh loopback archive on 127.0.0.1 (random port) and its base URL."""
    archive = Archive({obsid: path.read_bytes() for obsid, path in served.items()})
    server = _QuietServer(("127.0.0.1", 0), _handler(archive, hang_s=1.0))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield archive, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _config(base_url: str, **changes) -> DownloadConfig:
    settings = dict(
        base_url=base_url, release=RELEASE, workers=4, retries=3, backoff_s=0.01, timeout_s=0.5
    )
    return DownloadConfig(**{**settings, **changes})


def _dr1_obsids(served, n: int) -> list[int]:
    return sorted(o for o, p in served.items() if "dr1_" in str(p))[:n]


def test_catalogue_matches_75_real_dr1_files(served):
    assert len(_dr1_obsids(served, 1000)) == 75


def test_downloads_are_byte_identical_and_resume_skips_them(archive, served, tmp_path):
    archive, base_url = archive
    obsids = [*_dr1_obsids(served, 5), DR6_GZ, DR7]
    results = download_spectra(obsids, tmp_path, _config(base_url), progress=False)
    assert [r.status for r in results] == ["downloaded"] * 7
    for result in results:
        assert Path(result.path).read_bytes() == served[result.obsid].read_bytes()
        assert result.attempts == 1
    assert (tmp_path / f"{DR6_GZ}.fits.gz").is_file()
    assert (tmp_path / f"{DR7}.fits").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(r.path).name for r in results)
    served_before = len(archive.requests)
    again = download_spectra(obsids, tmp_path, _config(base_url), progress=False)
    assert [r.status for r in again] == ["present"] * 7
    assert len(archive.requests) == served_before


def test_failures_then_success_are_retried_with_backoff(archive, served, tmp_path):
    archive, base_url = archive
    failing, truncated, slow, hanging, overloaded = _dr1_obsids(served, 5)
    archive.plans = {
        failing: ["500", "500", "ok"],
        truncated: ["truncate", "ok"],
        slow: ["slow"],
        hanging: ["hang", "ok"],
        overloaded: ["503", "ok"],
    }
    delays: list[float] = []
    result = download_one(failing, tmp_path, _config(base_url), sleep=delays.append)
    assert (result.status, result.attempts) == ("downloaded", 3)
    assert delays == [0.01, 0.02]
    results = download_spectra(
        [truncated, slow, hanging, overloaded], tmp_path, _config(base_url), progress=False
    )
    assert {r.obsid: r.attempts for r in results} == {
        truncated: 2,
        slow: 1,
        hanging: 2,
        overloaded: 2,
    }
    for result in results:
        assert result.status == "downloaded"
        assert Path(result.path).read_bytes() == served[result.obsid].read_bytes()
    assert not list(tmp_path.glob(".*"))


def test_lasting_failures_leave_no_file(archive, served, tmp_path):
    archive, base_url = archive
    truncated, broken, html = _dr1_obsids(served, 3)
    archive.plans = {truncated: ["truncate"] * 4, broken: ["500"] * 4, html: ["html"] * 4}
    obsids = [truncated, broken, html, 404404, DR7 + 1, DR7_MRS]
    results = {r.obsid: r for r in download_spectra(obsids, tmp_path, _config(base_url), False)}
    assert all(r.status == "failed" and r.path is None for r in results.values())
    assert results[truncated].attempts == 4 and "short body" in results[truncated].error
    assert results[broken].attempts == 4 and "HTTP 500" in results[broken].error
    assert results[html].attempts == 4 and "not a readable spectrum" in results[html].error
    assert results[404404].attempts == 1 and "HTTP 404" in results[404404].error
    assert results[DR7 + 1].attempts == 1
    assert results[DR7 + 1].error == f"the file is obsid {DR7}, asked for {DR7 + 1}"
    assert results[DR7_MRS].attempts == 1 and "medium-resolution" in results[DR7_MRS].error
    assert list(tmp_path.iterdir()) == []


def test_url_pattern_and_token():
    config = DownloadConfig(base_url="https://www.lamost.org/", release="dr6/v2", token="abc")
    assert config.url(123) == "https://www.lamost.org/dr6/v2/spectrum/fits/123?token=abc"
    assert DownloadConfig().url(5) == "https://www.lamost.org/dr10/v2.0/spectrum/fits/5"


def test_read_obsids(tmp_path):
    listing = tmp_path / "obsids.txt"
    listing.write_text("# sample of F stars\n605006\n\n605015  # second\n")
    assert read_obsids(listing) == [605006, 605015]
    listing.write_text("605006\nJ221202.24+291221.8\n")
    with pytest.raises(ValueError, match=r"obsids.txt:2"):
        read_obsids(listing)


def test_cli_download_reports_failures_with_exit_code(archive, served, tmp_path, capsys):
    archive, base_url = archive
    good = _dr1_obsids(served, 2)
    listing = tmp_path / "obsids.txt"
    listing.write_text("".join(f"{o}\n" for o in good))
    argv = ["download", "404404", "--obsids", str(listing), "--out", str(tmp_path / "out")]
    argv += ["--base-url", base_url, "--release", RELEASE, "--backoff", "0.01", "--quiet"]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert '"downloaded": 2' in captured.out and '"failed": 1' in captured.out
    assert "HTTP 404" in captured.err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{o}.fits" for o in good]
