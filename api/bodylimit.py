"""A cap on request bodies, enforced while they arrive (before a multipart upload is spooled to disk).

A `Content-Length` over the limit is answered 413 at once; a body without one (chunked) is counted
as it streams and cut off with 413 as soon as it passes the limit. The answer is problem+json.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _TooLarge(BaseException):  # noqa: N818 - not an Exception, so body parsers cannot swallow it
    """Raised out of `receive` when the body passes the limit."""


class BodyLimit:
    """ASGI middleware: `limit_for(method, path)` gives the largest body accepted, in bytes."""

    def __init__(self, app: ASGIApp, limit_for: Callable[[str, str], int]) -> None:
        self.app = app
        self.limit_for = limit_for

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit_for(scope["method"], scope["path"])
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _refuse(send, scope["path"], limit)
            return
        seen = 0
        started = False

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except _TooLarge:
            if not started:
                await _refuse(send, scope["path"], limit)


async def _refuse(send: Send, path: str, limit: int) -> None:
    body = json.dumps({
        "type": "https://gridwatch.dev/problems/too-large", "title": "Request body too large", "status": 413,
        "detail": f"the request body is over {limit} bytes (the limit for {path})", "instance": path,
    }).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})
