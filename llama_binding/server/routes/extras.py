"""llama-server's extra endpoints: ``/health``, ``/tokenize``, ``/detokenize``, ``/metrics``,
and its router's ``/models/load`` and ``/models/unload``, and ``/models/reload`` (hot swap)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Callable

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError, error_response, status_of
from ..metrics import CONTENT_TYPE
from ..middleware import key_matches, presented_key
from ..pool import ModelEntry, ModelPool
from ..schemas import DetokenizeRequest, ModelRequest, TokenizeRequest
from ..state import ServerState, server_state
from ._common import parse

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> Response:
    """200 when requests can be served (one model: once it is loaded; many: they load on
    demand), else 503 with the reason."""
    state = server_state(request)
    if state.healthy:
        return JSONResponse({"status": "ok"})
    status = "error" if state.error else ("shutting down" if state.draining else "loading")
    body = {"status": status, "error": {"code": 503, "message": state.error or f"the server is {status}",
                                        "type": "unavailable_error"}}
    return JSONResponse(body, status_code=503)


@router.post("/tokenize")
async def tokenize(request: Request) -> Response:
    state = server_state(request)
    try:
        body = await parse(request, TokenizeRequest)
        with await state.lease(body.model) as lease:
            tokens = await lease.llm.atokenize(body.content, add_bos=body.add_special,
                                               special=body.parse_special)
            vocab = lease.llm.engine.unguarded_vocab
            if not body.with_pieces:
                return JSONResponse({"tokens": tokens})
            pieces = []
            for t in tokens:
                raw = vocab.token_to_piece(t)
                try:
                    piece: object = raw.decode("utf-8")
                except UnicodeDecodeError:  # part of a character: its bytes, as llama-server does
                    piece = list(raw)
                pieces.append({"id": t, "piece": piece})
        return JSONResponse({"tokens": pieces})
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)


@router.post("/detokenize")
async def detokenize(request: Request) -> Response:
    state = server_state(request)
    try:
        body = await parse(request, DetokenizeRequest)
        with await state.lease(body.model) as lease:
            content = await lease.llm.adetokenize(body.tokens)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return JSONResponse({"content": content.decode("utf-8", "replace")})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.single and state.llm is None and state.error is None:
        raise ApiError(503, "the model is loading")
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)


@router.post("/models/load")
async def load_model(request: Request) -> Response:
    """Load a model now (llama-server's router endpoint)."""
    return await _admin(request, ModelPool.load)


@router.post("/models/unload")
async def unload_model(request: Request) -> Response:
    """Unload a model (its requests in flight finish first)."""
    return await _admin(request, ModelPool.unload)


@router.post("/models/reload")
async def reload_model(request: Request) -> Response:
    """Hot swap a model: a new engine (the file read again) takes new requests while the
    old one finishes those in flight."""
    return await _admin(request, ModelPool.reload)


async def _admin(request: Request, action: Callable[[ModelPool, ModelEntry], Awaitable[Any]]) -> Response:
    """Check the admin key (when set), parse ``{"model": NAME}``, run ``action`` on that
    model; answer its status."""
    state = server_state(request)
    try:
        _check_admin(request, state)
        body = await parse(request, ModelRequest)
        entry = state.pool.resolve(body.model)
        await action(state.pool, entry)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return JSONResponse({"success": True, "model": entry.alias, **entry.describe()})


def _check_admin(request: Request, state: ServerState) -> None:
    """With ``--admin-api-key`` set, only those keys may load, unload and reload models."""
    keys = state.settings.admin_api_key
    if keys and not key_matches(presented_key(request.scope["headers"]), keys):
        raise ApiError(401, "loading, unloading and reloading models needs an admin API key",
                       code="invalid_api_key")
