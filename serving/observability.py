"""Request ids, structured JSON logs and per-task Prometheus metrics for the service.

Usage: ``Skysort.add_asgi_middleware(ObserveRequests, settings=Settings.from_env())``;
``configure_logging()`` once per process.

Each request gets an id (the client's ``X-Request-ID`` when it is a short token, else a new
one), echoed in the response header and in one JSON log line (method, path, task, status,
milliseconds, body size; never the payload). The same middleware answers 503 +
``Retry-After`` when a worker already handles ``max_inflight`` requests, adds
``Retry-After`` to every 503, and repairs BentoML's habit of wrapping a 4xx error object
in a list.
"""

from __future__ import annotations

import contextvars
import functools
import json
import logging
import logging.handlers
import os
import queue
import re
import sys
import time
from types import SimpleNamespace

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.config import Settings

#: endpoint path -> task label of the metrics
ROUTE_TASKS = {
    "/classify_spectrum": "stellar",
    "/classify_halpha": "halpha",
    "/classify_galaxy": "galaxy",
    "/classify_batch": "batch",
    "/generate_spectra": "gan",
    "/models": "models",
}
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
logger = logging.getLogger("skysort.service")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and the record's extras."""

    _STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": REQUEST_ID.get(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class QuietUserErrors(logging.Filter):
    """Log a client's validation error as one info line, without traceback or input.

    BentoML logs every rejected body at error level with a traceback whose pydantic
    message quotes the input values; a bad request is not a server fault, and request
    payloads stay out of the logs.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        code = getattr(getattr(error, "error_code", None), "value", None)
        code = code if code is not None else getattr(error, "status_code", 500)
        if error is not None and (type(error).__name__ == "ValidationError" or code < 500):
            record.msg = f"{record.getMessage()}: client error {type(error).__name__}"
            record.args = ()
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def configure_logging(level: int = logging.INFO) -> None:
    """Send the ``skysort`` loggers to stderr as JSON lines (idempotent)."""
    root = logging.getLogger("skysort")
    if any(isinstance(h.formatter, JsonFormatter) for h in root.handlers):
        return
    for name in ("bentoml._internal.server.http_app", "bentoml.serve"):
        logging.getLogger(name).addFilter(QuietUserErrors())
    stream = logging.StreamHandler(sys.stderr)
    stream.formatter = logging.Formatter("%(message)s")
    # Lines are formatted on the request's thread (the request id is a context variable)
    # and written by a listener thread, so a slow stderr never holds up a request.
    records: queue.SimpleQueue = queue.SimpleQueue()
    handler = _FormattingQueueHandler(records)
    handler.formatter = JsonFormatter()
    handler.formatter.converter = time.gmtime
    logging.handlers.QueueListener(records, stream).start()
    root.addHandler(handler)
    root.setLevel(level)
    root.propagate = False


class _FormattingQueueHandler(logging.handlers.QueueHandler):
    """Queues records already formatted as JSON (the listener writes ``msg`` as is)."""

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        line = self.format(record)
        return logging.makeLogRecord({"msg": line, "levelno": record.levelno, "name": record.name})


@functools.cache
def metrics() -> SimpleNamespace:
    """The service's Prometheus metrics, created on first use.

    Created lazily because BentoML sets up multi-process collection in each worker after
    importing this module; prometheus_client must not be imported before that.
    """
    from prometheus_client import Counter, Histogram

    return SimpleNamespace(
        requests=Counter(
            "skysort_requests",
            "HTTP requests by endpoint task and status code",
            ["task", "status"],
        ),
        latency=Histogram(
            "skysort_request_duration_seconds",
            "Request latency by endpoint task",
            ["task"],
            buckets=_LATENCY_BUCKETS,
        ),
        files=Counter(
            "skysort_files",
            "Inputs classified, by task and outcome (ok or error)",
            ["task", "outcome"],
        ),
        batch_rows=Histogram(
            "skysort_predict_batch_rows",
            "Rows per network call after micro-batching",
            ["task"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
        ),
    )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"x-request-id":
            text = value.decode("latin-1")
            if _REQUEST_ID_PATTERN.match(text):
                return text
    return os.urandom(8).hex()


class ObserveRequests:
    """Request id, admission control, error-shape repair, metrics and one log line."""

    def __init__(self, app: ASGIApp, settings: Settings | None = None):
        self.app = app
        self.settings = settings or Settings.from_env()
        self.inflight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        task = ROUTE_TASKS.get(path)
        request_id = _request_id(scope)
        token = REQUEST_ID.set(request_id)
        status = {"code": 500, "bytes_in": 0}
        started = time.perf_counter()
        try:
            if task is not None and self.inflight >= self.settings.max_inflight:
                status["code"] = 503
                busy = JSONResponse(
                    {"error": f"busy: {self.inflight} requests in progress; retry later"},
                    status_code=503,
                )
                await busy(scope, receive, self._wrap_send(send, request_id, status))
                return
            self.inflight += task is not None
            try:
                await self.app(
                    scope,
                    _counting(receive, status),
                    self._wrap_send(send, request_id, status),
                )
            finally:
                self.inflight -= task is not None
        finally:
            elapsed = time.perf_counter() - started
            if task is not None:
                self._record(scope, task, status, elapsed)
            REQUEST_ID.reset(token)

    def _record(self, scope: Scope, task: str, status: dict, elapsed: float) -> None:
        m = metrics()
        m.requests.labels(task=task, status=str(status["code"])).inc()
        m.latency.labels(task=task).observe(elapsed)
        logger.info(
            "request",
            extra={
                "method": scope["method"],
                "path": scope["path"],
                "task": task,
                "status": status["code"],
                "ms": round(elapsed * 1000, 2),
                "bytes_in": status["bytes_in"],
            },
        )

    def _wrap_send(self, send: Send, request_id: str, status: dict) -> Send:
        held: list[Message] = []

        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                headers = [(k, v) for k, v in message.get("headers", []) if k != b"x-request-id"]
                headers.append((b"x-request-id", request_id.encode()))
                if message["status"] == 503 and not any(k == b"retry-after" for k, _ in headers):
                    headers.append((b"retry-after", str(self.settings.retry_after_s).encode()))
                message = {**message, "headers": headers}
                if 400 <= message["status"] < 500 and _is_json(headers):
                    held.append(message)  # the body may need repair; hold until complete
                    return
            elif message["type"] == "http.response.body" and held:
                held.append(message)
                if message.get("more_body", False):
                    return
                for repaired in _unwrap_error_list(held):
                    await send(repaired)
                held.clear()
                return
            await send(message)

        return wrapped


def _counting(receive: Receive, status: dict) -> Receive:
    async def counted() -> Message:
        message = await receive()
        if message["type"] == "http.request":
            status["bytes_in"] += len(message.get("body", b""))
        return message

    return counted


def _is_json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(k == b"content-type" and v.startswith(b"application/json") for k, v in headers)


def _unwrap_error_list(messages: list[Message]) -> list[Message]:
    """``[{"error": ...}]`` (BentoML's 4xx shape) becomes ``{"error": ...}``."""
    start, bodies = messages[0], messages[1:]
    body = b"".join(m.get("body", b"") for m in bodies)
    try:
        value = json.loads(body)
    except ValueError:
        return messages
    if not (isinstance(value, list) and len(value) == 1 and isinstance(value[0], dict)):
        return messages
    body = json.dumps(value[0]).encode()
    headers = [(k, v) for k, v in start["headers"] if k != b"content-length"]
    headers.append((b"content-length", str(len(body)).encode()))
    return [{**start, "headers": headers}, {"type": "http.response.body", "body": body}]
