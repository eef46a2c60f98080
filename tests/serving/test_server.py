"""The service as deployed: `bentoml serve` in a subprocess, probed over loopback.

Checks what only a real server shows: readiness, Prometheus metrics per task, and the
structured request log (request id, no payload).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "SKYSORT_WORKERS": "1"}
    # `skysort serve` (what `make serve` runs) execs BentoML, so this also tests that path.
    command = [sys.executable, "-m", "skysort.cli", "serve", "--port", str(port)]
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        else:
            pytest.fail(f"server not ready in 180 s:\n{log.read_text()[-3000:]}")
        yield base, log
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=30)


def test_probes(server):
    base, _ = server
    assert httpx.get(f"{base}/livez").status_code == 200
    assert httpx.get(f"{base}/readyz").status_code == 200


def test_metrics_count_requests_per_task_and_logs_carry_the_request_id(server, data_dir):
    base, log = server
    spectrum = sorted((data_dir / "lamost").rglob("*.fits"))[0]
    content = spectrum.read_bytes()
    ok = httpx.post(
        f"{base}/classify_spectrum",
        files={"file": (spectrum.name, content)},
        headers={"x-request-id": "test-req-0001"},
    )
    assert ok.status_code == 200 and ok.headers["x-request-id"] == "test-req-0001"
    bad = httpx.post(f"{base}/classify_galaxy", files={"file": ("x.fits", b"not a picture")})
    assert bad.status_code == 422
    text = httpx.get(f"{base}/metrics").text
    assert 'skysort_requests_total{status="200",task="stellar"}' in text
    assert 'skysort_requests_total{status="422",task="galaxy"}' in text
    assert 'skysort_request_duration_seconds_bucket{le="0.2",task="stellar"}' in text
    assert 'skysort_files_total{outcome="ok",task="stellar"}' in text
    assert "bentoml_service_request_total" in text  # BentoML's own metrics stay
    time.sleep(0.5)  # let the log line reach the file
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    mine = [x for x in lines if x.get("request_id") == "test-req-0001"]
    assert mine and mine[-1]["status"] == 200 and mine[-1]["path"] == "/classify_spectrum"
    assert mine[-1]["bytes_in"] > len(content)
    assert "LAMOST" not in log.read_text()  # the FITS header never reaches the log
