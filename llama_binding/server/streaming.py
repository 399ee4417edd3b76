"""Running a request: its time limit, the client's disconnect, and server-sent events.

A plain request runs as a task beside a watcher of the client's connection: when the
client goes, the task is cancelled, which cancels its sequences in the engine (AsyncLlama
frees a cancelled caller's slot at its next step). A stream is an ``EventSourceResponse``
(sse-starlette: keep-alive comments, disconnect detection, shutdown signal); its events are
``data: <json>`` and, last, ``data: [DONE]``; an error after the stream started is sent as
an ``{"error": ...}`` event before ``[DONE]``, so every stream ends the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Callable, TypeVar

import anyio
from sse_starlette import EventSourceResponse
from starlette.requests import Request
from starlette.types import Message, Send

from .errors import error_body, status_of

__all__ = ["ClientGone", "event_stream", "run_request"]

logger = logging.getLogger("llama_binding.server")
T = TypeVar("T")


class ClientGone(Exception):
    """The client closed the connection before the answer was ready."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def run_request(request: Request, work: Awaitable[T], timeout: float) -> T:
    """``work``'s result; cancelled when the client disconnects (ClientGone) or after
    ``timeout`` seconds (asyncio.TimeoutError)."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # its cancellation (or its own error): the answer is not wanted now
        pass
    if watcher in done:
        raise ClientGone
    raise asyncio.TimeoutError


class _EventSource(EventSourceResponse):
    """sse-starlette's response without a cancel scope per event when sends have no time
    limit (it opens ``anyio.move_on_after(None)`` around every send: a tenth of the event
    loop's time per streamed token, measured on an H200 at 64 streams)."""

    async def _send_with_timeout(self, send: Send, message: Message) -> None:
        if self.send_timeout is not None:
            await super()._send_with_timeout(send, message)
            return
        try:
            await send(message)
        except BaseException:
            self._send_interrupted = True
            raise


def event_stream(chunks: AsyncIterator[Any], timeout: float, keepalive: float,
                 shutdown: anyio.Event | None, grace: float) -> EventSourceResponse:
    """The SSE response of an OpenAI stream (see the module docstring)."""
    return _EventSource(_events(chunks, timeout), ping=keepalive, sep="\n",
                        headers={"X-Accel-Buffering": "no", "Cache-Control": "no-cache"},
                        shutdown_event=shutdown, shutdown_grace_period=grace)


def _event(chunk: Any, dumps: Callable[[Any], str] = json.dumps) -> bytes:
    """One ``data:`` event, framed here: JSON has no raw newline to split, and bytes pass
    sse-starlette untouched (its framing of a str runs a regex per event)."""
    return b"data: " + dumps(chunk).encode() + b"\n\n"


async def _events(chunks: AsyncIterator[Any], timeout: float) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    try:
        # the first chunk may wait for a slot: bounded by the timeout; then the deadline is
        # checked per chunk (a wait_for per chunk would cost a task per token)
        first = await asyncio.wait_for(chunks.__anext__(), timeout)
        yield _event(first)
        async for chunk in chunks:
            yield _event(chunk)
            if loop.time() > deadline:
                raise asyncio.TimeoutError
    except StopAsyncIteration:
        pass
    except Exception as exc:  # the stream has started: the error goes in-band
        e = status_of(exc)
        yield _event(error_body(e.status, e.message, e.code, e.param))
    finally:
        aclose = getattr(chunks, "aclose", None)
        if aclose is not None:
            await aclose()
    yield b"data: [DONE]\n\n"
