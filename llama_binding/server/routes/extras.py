"""llama-server's extra endpoints: ``/health``, ``/tokenize``, ``/detokenize``, ``/metrics``."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ..errors import ApiError, error_response, status_of
from ..metrics import CONTENT_TYPE
from ..schemas import DetokenizeRequest, TokenizeRequest
from ..state import server_state
from ._common import parse

__all__ = ["router"]

router = APIRouter()


@router.get("/health")
async def health(request: Request) -> Response:
    state = server_state(request)
    if state.llm is not None and not state.draining:
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
        llm = state.ready()
        tokens = await llm.atokenize(body.content, add_bos=body.add_special, special=body.parse_special)
        if not body.with_pieces:
            return JSONResponse({"tokens": tokens})
        engine = llm.engine
        pieces = []
        for t in tokens:
            raw = engine.unguarded_vocab.token_to_piece(t)
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
        llm = state.ready()
        content = await llm.adetokenize(body.tokens)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return JSONResponse({"content": content.decode("utf-8", "replace")})


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = server_state(request)
    if state.llm is None and state.error is None:
        raise ApiError(503, "the model is loading")
    return Response(state.metrics.render(), media_type=CONTENT_TYPE)
