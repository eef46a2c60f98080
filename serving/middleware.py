"""ASGI middleware that rejects form fields which are not file uploads.

Usage: ``Skysort.add_asgi_middleware(RequireFileUploads, fields=("file",))``.

BentoML reads a ``pathlib.Path`` form field that arrives without a filename as a URL and
downloads it; any other string then fails inside BentoML with a 500. A user who sends
``-F file=spec.fits`` (no ``@``) deserves a 400 that says what to do, and the service should
not fetch URLs on a client's behalf, so such requests are answered here, before BentoML.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

_FORM_TYPES = (b"multipart/form-data", b"application/x-www-form-urlencoded")


class RequireFileUploads:
    """Answer 400 when a multipart field in ``fields`` holds text instead of a file."""

    def __init__(self, app: ASGIApp, fields: Iterable[str] = ("file",)):
        self.app = app
        self.fields = tuple(fields)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not _is_form_post(scope):
            await self.app(scope, receive, send)
            return
        messages = await _read_body(receive)
        replay = _replayer(messages)
        form = await Request(scope, receive=replay).form()
        try:
            text_fields = [
                name
                for name in self.fields
                if any(not isinstance(value, UploadFile) for value in form.getlist(name))
            ]
        finally:
            await form.close()
        if text_fields:
            reason = (
                f"form field {text_fields[0]!r} must be a file upload "
                f"(curl: -F {text_fields[0]}=@path), not text"
            )
            await JSONResponse({"error": reason}, status_code=400)(scope, receive, send)
            return
        await self.app(scope, _replayer(messages), send)


def _is_form_post(scope: Scope) -> bool:
    if scope["type"] != "http" or scope["method"] != "POST":
        return False
    headers = dict(scope.get("headers") or [])
    return headers.get(b"content-type", b"").startswith(_FORM_TYPES)


async def _read_body(receive: Receive) -> list[Message]:
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _replayer(messages: list[Message]) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        return {"type": "http.disconnect"}

    return receive
