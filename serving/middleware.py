"""ASGI middleware that guards uploads before BentoML parses them, and one that spreads
keep-alive connections over the workers (:class:`RotateConnections`).

Usage: ``Skysort.add_asgi_middleware(RequireFileUploads, fields=("file",), max_body_bytes=N)``.

Two checks, both cheap:

- the body may not exceed ``max_body_bytes`` (413, judged from Content-Length before
  anything is read, and counted while reading for chunked uploads);
- BentoML reads a ``pathlib.Path`` form field that arrives without a filename as a URL and
  downloads it; any other string then fails inside BentoML with a 500. A user who sends
  ``-F file=spec.fits`` (no ``@``) deserves a 400 that says what to do, and the service
  should not fetch URLs on a client's behalf. Only the part headers of the multipart body
  are looked at (split on the boundary), so the form is parsed once, by BentoML.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterable
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_MULTIPART = b"multipart/form-data"
_URLENCODED = b"application/x-www-form-urlencoded"
_BOUNDARY = re.compile(rb'boundary="?([^";,]+)"?', re.IGNORECASE)
_DISPOSITION = re.compile(rb"^content-disposition:(.*)$", re.IGNORECASE | re.MULTILINE)
_NAME = re.compile(rb'(?:^|;)\s*name="([^"]*)"')
_FILENAME = re.compile(rb"(?:^|;)\s*filename\*?=")


class RotateConnections:
    """Asks clients to reconnect once a keep-alive connection is ``max_age_s`` old.

    BentoML's workers accept connections from one shared socket, and a connection stays
    with the worker that accepted it for as long as the client keeps it. Clients that open
    their connections together (a pipeline's pool, the load test) often land on one
    worker, which then does every request's Python work while the other idles: in three
    load-test runs the batch workers' CPU split 1:0, 2:1 and 3:1, and the all-on-one run
    reached 1,725 spectra/s against 1,873-1,887. So the first response after a
    connection's ``max_age_s`` carries ``Connection: close``; the client opens a new one,
    which the worker that is free to accept it takes. A reconnection costs a TCP
    handshake on the client's next request, once every ``max_age_s`` per connection.
    """

    #: connections remembered per worker (closed ones are dropped oldest first)
    remembered = 4096

    def __init__(self, app: ASGIApp, max_age_s: float = 2.0):
        self.app = app
        self.max_age_s = max_age_s
        self._opened: OrderedDict[tuple, float] = OrderedDict()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] != "http" or not client or scope.get("http_version") != "1.1":
            await self.app(scope, receive, send)
            return
        key = (tuple(client), tuple(scope.get("server") or ()))
        now = time.monotonic()
        opened = self._opened.get(key)
        if opened is None or now - opened > 10 * self.max_age_s:  # new, or a reused port
            self._opened[key] = opened = now
            if len(self._opened) > self.remembered:
                self._opened.popitem(last=False)
        if now - opened < self.max_age_s:
            await self.app(scope, receive, send)
            return
        del self._opened[key]

        async def closing(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"connection"
                ]
                message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, closing)


class BodyTooLarge(Exception):
    """The request body is larger than the limit."""


class RequireFileUploads:
    """413 for oversized bodies; 400 when a field in ``fields`` holds text, not a file."""

    def __init__(
        self,
        app: ASGIApp,
        fields: Iterable[str] = ("file",),
        max_body_bytes: int | None = None,
    ):
        self.app = app
        self.fields = tuple(fields)
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        limit = self.max_body_bytes
        declared = headers.get(b"content-length", b"")
        if limit is not None and declared.isdigit() and int(declared) > limit:
            await self._too_large(scope, receive, send)
            return
        try:
            messages = await _read_body(receive, limit)
        except BodyTooLarge:
            await self._too_large(scope, receive, send)
            return
        body = b"".join(m.get("body", b"") for m in messages)
        content_type = headers.get(b"content-type", b"")
        text_field = _first_text_field(content_type, body, self.fields)
        if text_field is not None:
            reason = (
                f"form field {text_field!r} must be a file upload "
                f"(curl: -F {text_field}=@path), not text"
            )
            await JSONResponse({"error": reason}, status_code=400)(scope, receive, send)
            return
        if messages[-1]["type"] == "http.request":  # complete (not cut by a disconnect):
            # replayed as one message, so that the form parser sees each part in one piece
            messages = [{"type": "http.request", "body": body, "more_body": False}]
        if content_type.startswith(_MULTIPART):
            send = _MalformedFormRepair(scope, messages, send)
        await self.app(scope, _replayer(messages), send)
        if isinstance(send, _MalformedFormRepair):
            await send.flush()

    async def _too_large(self, scope: Scope, receive: Receive, send: Send) -> None:
        megabytes = self.max_body_bytes / 2**20
        reason = f"request body over the {megabytes:g} MiB limit (SKYSORT_MAX_UPLOAD_MB)"
        await JSONResponse({"error": reason}, status_code=413)(scope, receive, send)


class _MalformedFormRepair:
    """Turns BentoML's 500 for a multipart body that cannot be parsed into a 400.

    BentoML answers every exception of its form parser with a 500. Parsing the form here
    for every request would double the cost of each upload, so the body is parsed again
    only when the answer is a 500, to tell a malformed request from a server fault.
    """

    def __init__(self, scope: Scope, messages: list[Message], send: Send):
        self.scope, self.messages, self.send = scope, messages, send
        self.held: list[Message] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 500 or self.held:
            self.held.append(message)
        else:
            await self.send(message)

    async def flush(self) -> None:
        if not self.held:
            return
        reason = await _form_error(self.scope, self.messages)
        if reason is None:
            for message in self.held:
                await self.send(message)
            return
        response = JSONResponse({"error": f"malformed multipart body: {reason}"}, 400)
        await response(self.scope, _replayer([]), self.send)


async def _form_error(scope: Scope, messages: list[Message]) -> str | None:
    """Why Starlette cannot parse the multipart body, or None if it can."""
    try:
        form = await Request(scope, receive=_replayer(messages)).form()
    except Exception as error:  # the parser's reason is the answer
        return getattr(error, "detail", None) or str(error) or type(error).__name__
    await form.close()
    return None


def _first_text_field(content_type: bytes, body: bytes, fields: tuple[str, ...]) -> str | None:
    """The first of ``fields`` that the form sends as text instead of a file, if any."""
    if content_type.startswith(_URLENCODED):
        names = {name for name, _ in parse_qsl(body.decode("latin-1"), keep_blank_values=True)}
        return next((f for f in fields if f in names), None)
    if not content_type.startswith(_MULTIPART):
        return None
    match = _BOUNDARY.search(content_type)
    if match is None:
        return None  # BentoML answers a malformed form itself
    wanted = {f.encode() for f in fields}
    delimiter = b"--" + match.group(1)
    start = body.find(delimiter)
    while start != -1:  # only each part's headers are sliced, never its (large) content
        start += len(delimiter)
        following = body.find(delimiter, start)
        part_end = len(body) if following == -1 else following
        head_end = body.find(b"\r\n\r\n", start, part_end)
        head = body[start : head_end if head_end != -1 else part_end]
        start = following
        disposition = _DISPOSITION.search(head)
        if disposition is None:
            continue
        name = _NAME.search(disposition.group(1).strip())
        if name and name.group(1) in wanted and not _FILENAME.search(disposition.group(1)):
            return name.group(1).decode()
    return None


async def _read_body(receive: Receive, limit: int | None) -> list[Message]:
    messages, size = [], 0
    while True:
        message = await receive()
        messages.append(message)
        size += len(message.get("body", b""))
        if limit is not None and size > limit:
            raise BodyTooLarge
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replayer(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive
