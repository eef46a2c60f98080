"""SDSS acquisition against a loopback HTTP server that answers like SkyServer.

The server replays the two real services' formats: SqlSearch's CSV (a ``#Table1`` line,
a header, rows) and getjpeg's JPEG bytes (real SDSS cutouts from data/galaxy). The objids
are real GZ1 galaxies of data/galaxy; their coordinates and photometry in the replayed CSV
are placeholders, since only the format is being tested.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from training.sdss_acquire import (
    GalaxyQuery,
    RateLimiter,
    SkyServer,
    SkyServerError,
    download_cutouts,
    galaxy_sql,
    is_complete_jpeg,
    parse_skyserver_csv,
)

REPO = Path(__file__).resolve().parents[2]
GALAXIES = {  # dr7objid -> (kind, GZ1 fractions p_el, p_cw, p_acw, p_edge, p_dk, p_mg)
    "587722981742215240": ("elliptical", (0.9, 0.02, 0.03, 0.03, 0.02, 0.0)),
    "587722981750014083": ("elliptical", (0.85, 0.05, 0.05, 0.03, 0.02, 0.0)),
    "587722983354204326": ("spiral", (0.05, 0.1, 0.8, 0.03, 0.02, 0.0)),
    "587722983360102542": ("spiral", (0.05, 0.05, 0.05, 0.83, 0.02, 0.0)),
}
HEADER = (
    "objid,dr7objid,ra,dec,redshift,petroR90_r,petroFlux_g,nvote,p_el,p_cw,p_acw,p_edge,"
    "p_dk,p_mg,p_el_debiased,p_cs_debiased,spiral,elliptical"
)


def _csv_answer(kind: str) -> str:
    lines = ["#Table1", HEADER]
    for i, (objid, (row_kind, fractions)) in enumerate(GALAXIES.items()):
        if row_kind != kind:
            continue
        ra, dec = 150.0 + i, 2.0 + i
        p = ",".join(f"{f:g}" for f in fractions)
        spiral, elliptical = (1, 0) if kind == "spiral" else (0, 1)
        lines.append(
            f"{1237650000000000000 + i},{objid},{ra},{dec},0.05,{10 + i},120.5,40,{p},"
            f"{fractions[0]},{1 - fractions[0]},{spiral},{elliptical}"
        )
    return "\n".join(lines) + "\n"


class Replay:
    """State shared with the handler: what was asked, and failures to inject."""

    def __init__(self, image_dir: Path):
        self.image_dir = image_dir
        self.requests: list[tuple[float, str, dict]] = []
        self.fail_first: dict[str, list[int | str]] = {}  # ra -> [503, "truncate", ...]


def _handler(replay: Replay):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep pytest output clean
            pass

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):  # noqa: N802 - http.server's name
            url = urllib.parse.urlparse(self.path)
            params = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
            replay.requests.append((time.monotonic(), url.path, params))
            if url.path == "/dr17/SkyServerWS/SearchTools/SqlSearch":
                if "FROM zooSpec" not in params.get("cmd", ""):
                    return self._send(400, b"Incorrect syntax near 'FROM'", "text/plain")
                kind = "spiral" if "z.spiral = 1" in params["cmd"] else "elliptical"
                return self._send(200, _csv_answer(kind).encode(), "text/plain")
            if url.path == "/dr17/SkyServerWS/ImgCutout/getjpeg":
                return self._cutout(params)
            return self._send(404, b"not found", "text/plain")

        def _cutout(self, params):
            index = int(round(float(params["ra"]) - 150.0))
            objid = list(GALAXIES)[index]
            body = (replay.image_dir / f"{objid}.jpeg").read_bytes()
            pending = replay.fail_first.get(objid, [])
            if pending:
                failure = pending.pop(0)
                if failure == "truncate":
                    return self._send(200, body[: len(body) // 2], "image/jpeg")
                return self._send(int(failure), b"Service Unavailable", "text/html")
            return self._send(200, body, "image/jpeg")

    return Handler


@pytest.fixture
def skyserver(data_dir):
    replay = Replay(data_dir / "galaxy" / "images")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(replay))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    replay.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    yield replay
    server.shutdown()
    server.server_close()


def _client(replay, interval=0.0, retries=3) -> SkyServer:
    limiter = RateLimiter(min_interval=interval)
    return SkyServer(base_url=replay.base_url, timeout=5, max_retries=retries, backoff=0.01,
                     limiter=limiter)  # fmt: skip


def test_sql_carries_every_parameter():
    query = GalaxyQuery(n_galaxies=10, kind="spiral", z_min=0.02, z_max=0.05,
                        g_flux_min=100.0, g_flux_max=5000.0)  # fmt: skip
    sql = galaxy_sql(query, "spiral", 10)
    assert sql.startswith("SELECT TOP 10 ")
    for fragment in (
        "FROM zooSpec AS z",
        "z.spiral = 1",
        "s.z BETWEEN 0.02 AND 0.05",
        "p.petroFlux_g >= 100",
        "p.petroFlux_g <= 5000",
        "p.petroR90_r",
    ):
        assert fragment in sql
    with pytest.raises(ValueError, match="kind"):
        GalaxyQuery(kind="lenticular")


def test_parse_csv_and_error_answer():
    rows = parse_skyserver_csv(_csv_answer("spiral"))
    assert [r["dr7objid"] for r in rows] == ["587722983354204326", "587722983360102542"]
    assert parse_skyserver_csv("#Table1\nobjid,ra\n") == []
    with pytest.raises(SkyServerError, match="no table"):
        parse_skyserver_csv("Error: Invalid column name 'p_foo'.")


def test_select_and_download_both_kinds(skyserver, tmp_path):
    client = _client(skyserver)
    query = GalaxyQuery(n_galaxies=4, kind="both", z_min=0.01, z_max=0.1, scale_factor=0.024)
    rows = client.select_galaxies(query)
    assert [r["label"] for r in rows] == ["spiral", "spiral", "elliptical", "elliptical"]
    assert [r["gz1_class_name"] for r in rows] == ["spiral_acw", "edge_on", "elliptical"] * 1 + [
        "elliptical"
    ]
    sql_asked = [p["cmd"] for _, path, p in skyserver.requests if path.endswith("SqlSearch")]
    assert "SELECT TOP 2 " in sql_asked[0] and "z.spiral = 1" in sql_asked[0]
    assert "z.elliptical = 1" in sql_asked[1]
    report = download_cutouts(rows, tmp_path, client, query, progress=False)
    assert (report.downloaded, report.skipped, report.failed) == (4, 0, {})
    for objid in GALAXIES:
        got = (tmp_path / "images" / f"{objid}.jpeg").read_bytes()
        assert got == (skyserver.image_dir / f"{objid}.jpeg").read_bytes()
    cutouts = [p for _, path, p in skyserver.requests if path.endswith("getjpeg")]
    assert cutouts[0]["width"] == "423" and float(cutouts[0]["scale"]) == pytest.approx(0.024 * 12)
    with open(tmp_path / "labels.csv", newline="") as handle:
        labels = list(csv.DictReader(handle))
    assert labels[0]["file"] == "images/587722983354204326.jpeg" and labels[0]["label"] == "spiral"
    assert json.loads((tmp_path / "query.json").read_text())["query"]["n_galaxies"] == 4


def test_retries_resume_and_no_partial_files(skyserver, tmp_path):
    client = _client(skyserver, retries=2)
    query = GalaxyQuery(n_galaxies=2, kind="elliptical")
    rows = client.select_galaxies(query)
    first, second = (r["dr7objid"] for r in rows)
    skyserver.fail_first = {first: [503, "truncate"], second: [503, 503, 503]}
    report = download_cutouts(rows, tmp_path, client, query, progress=False)
    assert report.downloaded == 1 and list(report.failed) == [f"images/{second}.jpeg"]
    assert "gave up after 3 attempts" in report.failed[f"images/{second}.jpeg"]
    assert is_complete_jpeg((tmp_path / "images" / f"{first}.jpeg").read_bytes())
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [f"{first}.jpeg"]
    before = len(skyserver.requests)
    again = download_cutouts(rows, tmp_path, client, query, progress=False)
    assert (again.downloaded, again.skipped, again.failed) == (1, 1, {})
    assert len(skyserver.requests) - before == 1  # only the missing image was asked for


def test_bad_sql_is_not_retried(skyserver):
    client = _client(skyserver)
    with pytest.raises(SkyServerError, match="HTTP 400: Incorrect syntax"):
        client.sql("SELECT nonsense", 17)
    assert len(skyserver.requests) == 1


def test_rate_limit_spaces_requests(skyserver, tmp_path):
    client = _client(skyserver, interval=0.1)
    query = GalaxyQuery(n_galaxies=4, kind="both")
    download_cutouts(client.select_galaxies(query), tmp_path, client, query, progress=False)
    times = [t for t, _, _ in skyserver.requests]
    assert len(times) == 6  # 2 SQL queries + 4 cutouts, at most one every 0.1 s
    assert times[-1] - times[0] >= 5 * 0.1 * 0.9


def test_script_end_to_end(skyserver, tmp_path):
    out = tmp_path / "gz1"
    command = [sys.executable, str(REPO / "scripts" / "sdss_galaxies.py"), "--out", str(out),
               "--n", "2", "--type", "spiral", "--z-min", "0.02", "--z-max", "0.08",
               "--g-flux-min", "50", "--base-url", skyserver.base_url, "--rate", "50"]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "downloaded 2, already there 0, failed 0" in done.stderr
    assert len(list((out / "images").glob("*.jpeg"))) == 2
    sql = next(p["cmd"] for _, path, p in skyserver.requests if path.endswith("SqlSearch"))
    assert "s.z BETWEEN 0.02 AND 0.08" in sql and "p.petroFlux_g >= 50" in sql
