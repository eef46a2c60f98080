"""Load test of the skysort service over loopback: throughput, latency, errors, memory.

Usage::

    python scripts/load_test.py                 # starts its own server, prints a table
    python scripts/load_test.py --quick         # a one-minute smoke of the same
    python scripts/load_test.py --url http://127.0.0.1:3000 --no-soak

Phases (each bounded in requests and in seconds):

1. per-file uploads to /classify_spectrum at concurrencies 1, 4, 16, 32;
2. /classify_batch uploads of ``--batch-files`` spectra per request at concurrencies 1, 2, 4,
   first as that many multipart file parts, then as one uncompressed tar archive;
3. a soak of ``--soak`` single-spectrum requests at concurrency 16 while the server's
   resident memory (all its processes) is sampled every second.

The spectra are the real LAMOST files under data/lamost. Every figure row carries the
1-minute load average, because the host may be shared, and the CPU time the server and the
load generator spent per request: the last column divides the host's cores by that cost,
the throughput ceiling of an otherwise idle host.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tarfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import aiohttp
import numpy as np
import psutil

REPO = Path(__file__).resolve().parents[1]
LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Phase:
    """Figures of one phase."""

    name: str
    concurrency: int
    requests: int = 0
    spectra: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    status: dict[int, int] = field(default_factory=dict)
    load_1min: float = 0.0
    server_cpu_s: float = 0.0
    client_cpu_s: float = 0.0

    def row(self) -> dict:
        lat = np.array(self.latencies_ms) if self.latencies_ms else np.zeros(1)
        errors_4xx = sum(n for s, n in self.status.items() if 400 <= s < 500)
        errors_5xx = sum(n for s, n in self.status.items() if s >= 500 or s == 0)
        return {
            "phase": self.name,
            "conc": self.concurrency,
            "requests": self.requests,
            "req/s": round(self.requests / self.seconds, 1),
            "spectra/s": round(self.spectra / self.seconds, 1),
            "p50 ms": round(float(np.percentile(lat, 50)), 1),
            "p95 ms": round(float(np.percentile(lat, 95)), 1),
            "p99 ms": round(float(np.percentile(lat, 99)), 1),
            "4xx": errors_4xx,
            "5xx": errors_5xx,
            "srv cpu ms/req": round(1000 * self.server_cpu_s / max(self.requests, 1), 2),
            "cli cpu ms/req": round(1000 * self.client_cpu_s / max(self.requests, 1), 2),
            "load1": self.load_1min,
            "cpu-bound req/s": self.cpu_bound_rate(),
        }

    def cpu_bound_rate(self) -> float | str:
        """Requests/s that the host's cores could sustain at this phase's CPU cost per
        request (server + load generator): the figure an idle host approaches."""
        cpu = (self.server_cpu_s + self.client_cpu_s) / max(self.requests, 1)
        if self.server_cpu_s == 0:
            return "-"
        return round(os.cpu_count() / cpu, 1)


def tar_of(paths: list[Path]) -> bytes:
    """An uncompressed tar of ``paths`` (what a pipeline might upload after a night)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for i, path in enumerate(paths):
            archive.add(path, arcname=f"{i:04d}-{path.name}")
    return buffer.getvalue()


def multipart(parts: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    """A multipart/form-data body (encoded once, sent many times) and its content type."""
    boundary = uuid.uuid4().hex
    chunks = []
    for field_name, filename, content in parts:
        chunks.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
        )
        chunks.append(content + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f"multipart/form-data; boundary={boundary}"


async def run_phase(
    session: aiohttp.ClientSession,
    url: str,
    bodies: list[tuple[bytes, str]],
    phase: Phase,
    spectra_per_request: int,
    max_requests: int,
    max_seconds: float,
    server_pid: int | None = None,
) -> Phase:
    """Send bodies round-robin from ``phase.concurrency`` clients until either bound."""
    counter = iter(range(max_requests))
    deadline = time.perf_counter() + max_seconds

    async def client() -> None:
        for i in counter:
            if time.perf_counter() > deadline:
                return
            body, content_type = bodies[i % len(bodies)]
            started = time.perf_counter()
            try:
                async with session.post(
                    url, data=body, headers={"Content-Type": content_type}
                ) as response:
                    await response.read()
                    code = response.status
            except aiohttp.ClientError:
                code = 0
            phase.latencies_ms.append((time.perf_counter() - started) * 1000)
            phase.status[code] = phase.status.get(code, 0) + 1
            phase.requests += 1
            phase.spectra += spectra_per_request if code == 200 else 0

    started = time.perf_counter()
    server_cpu, client_cpu = cpu_seconds(server_pid), time.process_time()
    await asyncio.gather(*(client() for _ in range(phase.concurrency)))
    phase.seconds = time.perf_counter() - started
    phase.server_cpu_s = cpu_seconds(server_pid) - server_cpu
    phase.client_cpu_s = time.process_time() - client_cpu
    phase.load_1min = round(os.getloadavg()[0], 2)
    return phase


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) used so far by a process and its children; 0 without pid.

    Unlike req/s, CPU per request does not depend on what else the host is running.
    """
    if pid is None:
        return 0.0
    total = 0.0
    for process in _tree(pid):
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def server_rss_mb(pid: int) -> float:
    """Resident memory of a process and all its children, in MB."""
    total = 0
    for process in _tree(pid):
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 1e6


async def soak(session, url, bodies, requests, pid, max_seconds) -> tuple[Phase, dict]:
    """The soak phase, with the server's RSS sampled every second."""
    samples: list[tuple[float, float]] = []
    phase = Phase("soak", 16)

    async def sample() -> None:
        start = time.perf_counter()
        while True:
            samples.append((time.perf_counter() - start, server_rss_mb(pid)))
            await asyncio.sleep(1.0)

    sampler = asyncio.create_task(sample())
    try:
        await run_phase(session, url, bodies, phase, 1, requests, max_seconds, pid)
    finally:
        sampler.cancel()
    samples.append((phase.seconds, server_rss_mb(pid)))
    rss = [mb for _, mb in samples]
    memory = {
        "rss_start_mb": round(rss[0], 1),
        "rss_end_mb": round(rss[-1], 1),
        "rss_max_mb": round(max(rss), 1),
        "growth_mb": round(rss[-1] - rss[0], 1),
        "samples": len(rss),
    }
    return phase, memory


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(port: int, workers: int | None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if workers:
        env["SKYSORT_WORKERS"] = str(workers)
    command = [sys.executable, "-m", "bentoml", "serve", "serving.service:Skysort"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        command,
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


async def wait_ready(session: aiohttp.ClientSession, base: str, timeout: float) -> float:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        try:
            async with session.get(f"{base}/readyz") as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except aiohttp.ClientError:
            pass
        await asyncio.sleep(0.25)
    raise TimeoutError(f"server at {base} not ready after {timeout:.0f} s")


def print_table(rows: list[dict]) -> None:
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "|".join("---" for _ in columns) + "|")
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")


async def main_async(args: argparse.Namespace) -> dict:
    spectra = sorted((REPO / "data" / "lamost").rglob("*.fits"))[: args.files]
    if not spectra:
        raise SystemExit("no LAMOST spectra under data/lamost")
    singles = [multipart([("file", p.name, p.read_bytes())]) for p in spectra]
    batch_bodies, tar_bodies = [], []
    for start in range(0, len(spectra), args.batch_files):
        chunk = [spectra[(start + i) % len(spectra)] for i in range(args.batch_files)]
        batch_bodies.append(multipart([("files", p.name, p.read_bytes()) for p in chunk]))
        tar_bodies.append(multipart([("files", f"night{start}.tar", tar_of(chunk))]))

    server = None
    base = args.url
    if base is None:
        port = free_port()
        server = start_server(port, args.workers)
        base = f"http://127.0.0.1:{port}"
    if urlparse(base).hostname not in LOOPBACK:
        raise SystemExit(f"{base}: this load test only targets loopback addresses")
    connector = aiohttp.TCPConnector(limit=64)
    timeout = aiohttp.ClientTimeout(total=120)
    pid = server.pid if server is not None else args.server_pid
    report: dict = {"url": base, "spectra_files": len(spectra)}
    try:
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            report["ready_s"] = round(await wait_ready(session, base, 300), 1)
            single_url, batch_url = f"{base}/classify_spectrum", f"{base}/classify_batch"
            await run_phase(session, single_url, singles, Phase("warm-up", 8), 1, 200, 30)
            phases = []
            for level in args.levels:
                phase = Phase("single", level)
                n = args.requests
                phases.append(await run_phase(session, single_url, singles, phase, 1, n, 60, pid))
            batch_forms = [("batch", batch_bodies), ("batch tar", tar_bodies)]
            for form, bodies in batch_forms[: 2 if args.batch_tar else 1]:
                for level in args.batch_levels:
                    phase = Phase(f"{form} x{args.batch_files}", level)
                    n = args.batch_requests
                    phases.append(
                        await run_phase(
                            session, batch_url, bodies, phase, args.batch_files, n, 60, pid
                        )
                    )
            if args.soak and pid is not None:
                phase, memory = await soak(session, single_url, singles, args.soak, pid, 600)
                phases.append(phase)
                report["memory"] = memory
            report["phases"] = [p.row() for p in phases]
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running server (loopback only); default: start one")
    parser.add_argument("--workers", type=int, help="SKYSORT_WORKERS of the started server")
    parser.add_argument("--server-pid", type=int, help="with --url: the server's pid (CPU, RSS)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16, 32])
    parser.add_argument("--requests", type=int, default=3000, help="per single level")
    parser.add_argument("--batch-levels", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--batch-files", type=int, default=100)
    parser.add_argument("--batch-requests", type=int, default=40, help="per batch level")
    parser.add_argument(
        "--no-batch-tar",
        dest="batch_tar",
        action="store_false",
        help="skip the batch phases that upload each batch as one tar archive",
    )
    parser.add_argument("--files", type=int, default=200, help="distinct spectra to send")
    parser.add_argument("--soak", type=int, default=20000, help="soak requests (0: none)")
    parser.add_argument("--no-soak", dest="soak", action="store_const", const=0)
    parser.add_argument("--quick", action="store_true", help="small counts, no soak")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.quick:
        args.requests, args.batch_requests, args.soak = 500, 8, 0
    report = asyncio.run(main_async(args))
    print(f"server {report['url']} ready in {report['ready_s']} s; {os.cpu_count()} CPUs")
    print_table(report["phases"])
    if "memory" in report:
        print("soak memory (MB):", json.dumps(report["memory"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
