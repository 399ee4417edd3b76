"""Pure ASGI middleware: API keys, the body size limit, and refusing work while draining.

Each wraps the app without touching the response stream of a request it lets through, so
server-sent events pass unbuffered.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

from starlette.exceptions import HTTPException

from .errors import error_body

__all__ = ["ApiKeyMiddleware", "BodyLimitMiddleware", "key_matches", "presented_key", "send_error"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


async def send_error(send: Send, status: int, message: str, code: str | None = None,
                     headers: Iterable[tuple[bytes, bytes]] = ()) -> None:
    """Answer with an OpenAI-shaped error."""
    body = json.dumps(error_body(status, message, code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})


def presented_key(headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    """The key of ``Authorization: Bearer KEY`` or ``X-Api-Key: KEY`` (raw ASGI headers)."""
    given = b""
    for name, value in headers:
        if name == b"authorization" and value[:7].lower() == b"bearer ":
            given = value[7:].strip()
        elif name == b"x-api-key":
            given = value.strip()
    return given


def key_matches(given: bytes, keys: Iterable[bytes | str]) -> bool:
    """Whether ``given`` is one of ``keys``, compared with every key, always, in constant
    time: the time taken does not tell which one matched."""
    ok = False
    for key in keys:
        ok |= hmac.compare_digest(given, key.encode() if isinstance(key, str) else key)
    return ok


class ApiKeyMiddleware:
    """``Authorization: Bearer KEY`` or ``X-Api-Key: KEY`` for every path but the public
    ones; keys compared in constant time; CORS preflights pass (the CORS layer answers)."""

    def __init__(self, app: ASGIApp, keys: Iterable[str], public: Iterable[str]) -> None:
        self.app = app
        self.keys = [k.encode() for k in keys]
        self.public = frozenset(public)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.keys or scope["path"] in self.public \
                or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        ok = key_matches(presented_key(scope["headers"]), self.keys)
        if not ok:
            await send_error(send, 401, "a valid API key is required (Authorization: Bearer KEY or "
                             "X-Api-Key: KEY)", "invalid_api_key", [(b"www-authenticate", b"Bearer")])
            return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Refuse a request body larger than ``limit`` bytes (413): at once by its
    Content-Length, else while it is read."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                await send_error(send, 413, f"the request body exceeds {self.limit} bytes", "body_too_large")
                return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:  # the app's error handler answers it
                    raise HTTPException(413, f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, limited, send)
