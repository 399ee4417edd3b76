"""What every route does with a request: parse its body into a model (a 400 in OpenAI's
shape when it does not fit), and answer with the result, a stream or an error."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError, error_response, status_of
from ..pool import Lease
from ..state import ServerState
from ..streaming import ClientGone, event_stream, run_request

__all__ = ["answer", "parse"]

M = TypeVar("M", bound=BaseModel)


async def parse(request: Request, model: type[M]) -> M:
    """The JSON body as ``model``; ApiError(400) naming the first problem."""
    raw = await request.body()
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        first = exc.errors()[0]
        if first["type"] == "json_invalid":
            raise ApiError(400, "the request body is not valid JSON") from None
        where = ".".join(str(p) for p in first["loc"])
        message = f"{where}: {first['msg']}" if where else first["msg"]
        raise ApiError(400, message, param=where or None) from None


async def answer(request: Request, state: ServerState, call: Awaitable[Any], stream: bool,
                 lease: Lease) -> Response:
    """The result of ``call`` (an AsyncLlama method of the leased model) as JSON, or its
    chunks as events; the lease is released when the answer is complete (a stream: when it
    ends, however it ends)."""
    settings = state.settings
    held: Lease | None = lease
    try:
        if stream:
            chunks = await call  # what goes wrong before the first chunk gets a status
            held = None  # the stream releases it
            return event_stream(_leased(chunks, lease), settings.request_timeout, settings.sse_keepalive,
                                state.shutdown, settings.drain_timeout)
        return JSONResponse(await run_request(request, call, settings.request_timeout))
    except ClientGone:
        return Response(status_code=499)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    finally:
        if held is not None:
            held.release()


async def _leased(chunks: AsyncIterator[Any], lease: Lease) -> AsyncIterator[Any]:
    """``chunks``, holding ``lease`` until they end or the stream is closed."""
    try:
        async for chunk in chunks:
            yield chunk
    finally:
        try:  # the stream's own cleanup (cancelling its sequences) first, on the engine it used
            aclose = getattr(chunks, "aclose", None)
            if aclose is not None:
                await aclose()
        finally:
            lease.release()
