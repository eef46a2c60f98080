"""Operational knobs of the service, read from ``SKYSORT_*`` environment variables.

Usage: ``settings = Settings.from_env()``; ``SKYSORT_MAX_UPLOAD_MB=50 skysort serve``.

Every knob has a default that suits a 2-core host; docs/service.md lists them. Invalid
values fail at start-up with a message naming the variable, never on a request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Settings:
    """Limits and batching parameters of one service process."""

    #: worker processes (each loads every model and has its own batchers)
    workers: int = 2
    #: seconds before a request is answered 504
    request_timeout_s: float = 60.0
    #: largest request body in MiB (413 above it)
    max_upload_mb: float = 64.0
    #: most files in one /classify_batch request, archive members included (413 above it)
    max_batch_files: int = 1000
    #: processes (per worker) that read and preprocess the files of a large batch in
    #: parallel; 1 prepares every batch in a thread of the worker
    batch_processes: int = 2
    #: threads of each worker's XLA CPU runtime (its intra-op and dispatch pools)
    xla_threads: int = 1
    #: seconds after which a keep-alive connection is closed on its next response, so
    #: that clients' connections spread over the workers again
    connection_max_age_s: float = 2.0
    #: most rows the micro-batcher sends to the network at once
    max_batch_size: int = 256
    #: longest a request may wait in the batching queue before it gets 503
    max_latency_ms: float = 2000.0
    #: requests being handled at once per worker; more get 503 + Retry-After
    max_inflight: int = 128
    #: Retry-After seconds sent with a 503
    retry_after_s: int = 1
    #: most spectra one /generate_spectra request may ask for
    max_generate: int = 1000
    #: 1 keeps BentoML's OpenTelemetry spans (costly per request, and no exporter is set)
    tracing: int = 0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults overridden by ``SKYSORT_<FIELD>`` variables (e.g. ``SKYSORT_WORKERS``)."""
        environ = os.environ if environ is None else environ
        values = {}
        for field in fields(cls):
            name = f"SKYSORT_{field.name.upper()}"
            if name not in environ:
                continue
            kind = int if field.type == "int" else float
            try:
                value = kind(environ[name])
            except ValueError:
                noun = "an integer" if kind is int else "a number"
                raise ValueError(f"{name}={environ[name]!r} is not {noun}") from None
            if value < 0 or (value == 0 and field.name != "tracing"):
                raise ValueError(f"{name}={environ[name]!r} must be positive")
            values[field.name] = value
        return cls(**values)

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1024 * 1024)


def start_jax(threads: int) -> None:
    """Create this process's JAX client with ``threads`` threads in XLA's CPU pools.

    XLA sizes those pools from ``PJRT_NPROC`` (else one thread per core) when the client
    is created, so the variable is set for that moment only and then restored: nothing
    else in the process sees it. A client created earlier (in-process tests) is kept as it
    is. One thread per service worker is the default: the workers and their preparation
    processes keep every core busy under load, and a batch split over two threads cost
    more CPU (A/B load tests: 90.2-95.3 against 91.0-97.1 ms of server CPU per 100-file
    request, docs/service.md). Set ``PJRT_NPROC`` yourself to override it.
    """
    import jax

    previous = os.environ.get("PJRT_NPROC")
    if previous is None:
        os.environ["PJRT_NPROC"] = str(threads)
    try:
        jax.devices()
    finally:
        if previous is None:
            del os.environ["PJRT_NPROC"]
