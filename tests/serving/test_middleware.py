"""Upload guard, admission control, error-shape repair, request ids, settings."""

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from serving.config import Settings
from serving.middleware import RequireFileUploads, RotateConnections
from serving.observability import JsonFormatter, ObserveRequests


def _app(*middleware, handler=None):
    async def default(request):
        body = await request.body()
        return JSONResponse({"received": len(body)})

    app = Starlette(routes=[Route("/classify_spectrum", handler or default, methods=["POST"])])
    for cls, options in reversed(middleware):
        app.add_middleware(cls, **options)
    return app


def test_body_over_the_limit_is_413_by_header_and_by_count():
    app = _app((RequireFileUploads, {"fields": ("file",), "max_body_bytes": 1000}))
    with TestClient(app) as client:
        small = client.post("/classify_spectrum", files={"file": ("a.fits", b"x" * 100)})
        assert small.status_code == 200 and small.json()["received"] > 100
        big = client.post("/classify_spectrum", files={"file": ("a.fits", b"x" * 5000)})
        assert big.status_code == 413
        assert "SKYSORT_MAX_UPLOAD_MB" in big.json()["error"]

        def chunks():  # no Content-Length: counted while reading
            for _ in range(10):
                yield b"y" * 500

        chunked = client.post(
            "/classify_spectrum", content=chunks(), headers={"content-type": "text/plain"}
        )
        assert chunked.status_code == 413


def test_file_field_with_filename_passes_text_field_is_400():
    app = _app((RequireFileUploads, {"fields": ("file", "files"), "max_body_bytes": None}))
    with TestClient(app) as client:
        ok = client.post(
            "/classify_spectrum",
            files=[("files", ("a", b'name="files"\r\n\r\n')), ("files", ("b", b"2"))],
            data={"task": "auto"},
        )
        assert ok.status_code == 200
        text = client.post("/classify_spectrum", data={"files": "a.fits"}, files={"x": ("x", b"")})
        assert text.status_code == 400
        assert "'files' must be a file upload" in text.json()["error"]


def test_inflight_limit_answers_503_with_retry_after():
    started = asyncio.Event()

    async def slow(request):
        started.set()
        await asyncio.sleep(0.3)
        return JSONResponse({"ok": True})

    settings = Settings(max_inflight=1, retry_after_s=3)
    app = _app((ObserveRequests, {"settings": settings}), handler=slow)

    async def main():
        import httpx

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            first = asyncio.create_task(client.post("/classify_spectrum"))
            await started.wait()
            second = await client.post("/classify_spectrum")
            return await first, second

    first, second = asyncio.run(main())
    assert first.status_code == 200
    assert second.status_code == 503
    assert second.headers["retry-after"] == "3"
    assert "busy" in second.json()["error"]


def test_bentoml_list_wrapped_errors_are_unwrapped_and_ids_echoed():
    async def wrapped_error(request):
        return JSONResponse([{"error": "bad input"}], status_code=400)

    app = _app((ObserveRequests, {"settings": Settings()}), handler=wrapped_error)
    with TestClient(app) as client:
        response = client.post("/classify_spectrum", headers={"x-request-id": "abc-123"})
        assert response.status_code == 400
        assert response.json() == {"error": "bad input"}
        assert int(response.headers["content-length"]) == len(response.content)
        assert response.headers["x-request-id"] == "abc-123"
        odd = client.post("/classify_spectrum", headers={"x-request-id": "a b\nc"})
        assert odd.headers["x-request-id"] != "a b\nc" and len(odd.headers["x-request-id"]) == 16


def test_json_log_lines_carry_extras_and_no_payload():
    record = logging.makeLogRecord(
        {"name": "skysort.service", "levelno": 20, "levelname": "INFO", "msg": "request"}
    )
    record.status, record.ms = 200, 3.5
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "request" and line["status"] == 200 and line["ms"] == 3.5
    assert {"time", "level", "request_id"} <= set(line)


def test_settings_from_env():
    settings = Settings.from_env({"SKYSORT_WORKERS": "3", "SKYSORT_MAX_UPLOAD_MB": "0.5"})
    assert settings.workers == 3 and settings.max_upload_bytes == 512 * 1024
    assert Settings.from_env({}).max_batch_size == 256
    with pytest.raises(ValueError, match="SKYSORT_WORKERS='two' is not an integer"):
        Settings.from_env({"SKYSORT_WORKERS": "two"})
    with pytest.raises(ValueError, match="must be positive"):
        Settings.from_env({"SKYSORT_MAX_INFLIGHT": "0"})
    assert Settings.from_env({"SKYSORT_XLA_THREADS": "3"}).xla_threads == 3


_XLA_THREADS = """
import collections, os, sys
from serving.config import start_jax
start_jax(int(sys.argv[1]))
import jax.numpy as jnp
(jnp.ones((256, 256)) @ jnp.ones((256, 256))).block_until_ready()
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in os.listdir("/proc/self/task")]
print(sum(name.endswith("XLAEigen") for name in names), os.environ.get("PJRT_NPROC"))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize(("threads", "preset", "expected"), [(1, None, "1 None"), (1, "2", "2 2")])
def test_start_jax_sizes_xlas_pools_and_leaves_the_environment_alone(threads, preset, expected):
    """XLA's CPU pools get ``threads`` threads, unless PJRT_NPROC says otherwise; the
    variable is not left set for anything else in the process (a fresh process each)."""
    environ = {k: v for k, v in os.environ.items() if k not in ("PJRT_NPROC", "NPROC")}
    environ["JAX_PLATFORMS"] = "cpu"
    if preset is not None:
        environ["PJRT_NPROC"] = preset
    run = subprocess.run(
        [sys.executable, "-c", _XLA_THREADS, str(threads)],
        capture_output=True,
        text=True,
        env=environ,
        cwd=Path(__file__).resolve().parents[2],
        check=True,
    )
    assert run.stdout.split("\n")[-2] == expected


def test_complete_body_is_replayed_as_one_message():
    seen = []

    async def handler(request):
        async for chunk in request.stream():
            seen.append(len(chunk))
        return JSONResponse({})

    app = _app((RequireFileUploads, {"max_body_bytes": None}), handler=handler)

    def chunks():
        for _ in range(5):
            yield b"z" * 300

    with TestClient(app) as client:
        response = client.post("/classify_spectrum", content=chunks())
    assert response.status_code == 200
    assert [n for n in seen if n] == [1500]


def test_connections_are_asked_to_close_once_they_are_old(monkeypatch):
    """A keep-alive connection gets ``Connection: close`` on its first response after
    ``max_age_s``; the client's next connection (same address, a new one) starts afresh."""
    clock = [100.0]
    monkeypatch.setattr("serving.middleware.time.monotonic", lambda: clock[0])
    app = _app((RotateConnections, {"max_age_s": 2.0}))
    with TestClient(app) as client:

        def connection_header():
            response = client.post("/classify_spectrum", content=b"x")
            assert response.status_code == 200 and response.json() == {"received": 1}
            return response.headers.get("connection")

        assert connection_header() is None  # opened at t = 100
        clock[0] = 101.9
        assert connection_header() is None
        clock[0] = 102.0
        assert connection_header() == "close"
        assert connection_header() is None  # the client's new connection
        clock[0] = 103.0
        assert connection_header() is None
        clock[0] = 104.5
        assert connection_header() == "close"


def test_only_http_1_1_connections_are_rotated():
    seen = []

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        seen.append(message)

    rotate = RotateConnections(app, max_age_s=0.0)
    for version in ("1.0", "1.1"):
        scope = {"type": "http", "http_version": version, "client": ("10.0.0.1", 4000)}
        asyncio.run(rotate(scope, None, send))
    assert seen[0]["headers"] == [] and seen[2]["headers"] == [(b"connection", b"close")]
