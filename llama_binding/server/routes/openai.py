"""The OpenAI endpoints: chat completions, completions, embeddings, models. Each parses its
body (``schemas.py``), asks the app's ``AsyncLlama`` and answers through ``_common.answer``;
every request is a sequence of the same continuous-batching engine."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ... import shapes
from ..errors import ApiError, error_response, status_of
from ..media import fetch_remote_images
from ..schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest
from ..state import server_state
from ..streaming import ClientGone, run_request
from ._common import answer, parse

__all__ = ["router"]

router = APIRouter()


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await _generate(request, ChatCompletionRequest, "acreate_chat_completion")


@router.post("/v1/completions")
async def completions(request: Request) -> Response:
    return await _generate(request, CompletionRequest, "acreate_completion")


async def _generate(request: Request, schema: type[CompletionRequest] | type[ChatCompletionRequest],
                    method: str) -> Response:
    """Parse the body, check it against the server, and answer with ``AsyncLlama.<method>``."""
    state = server_state(request)
    lease = None
    try:
        body = await parse(request, schema)
        limits = state.settings
        if isinstance(body, ChatCompletionRequest) and limits.allow_remote_media:
            body.messages = await fetch_remote_images(body.messages, max_bytes=limits.remote_media_max_bytes,
                                                      timeout=limits.remote_media_timeout)
        lease = await state.lease(body.model)
        state.check_n(body.n, lease.entry)
        call = getattr(lease.llm, method)(**body.to_kwargs(), model=lease.entry.alias)
    except Exception as exc:
        if lease is not None:
            lease.release()
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return await answer(request, state, call, body.stream, lease)


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    state = server_state(request)
    try:
        body = await parse(request, EmbeddingRequest)
        entry = state.pool.resolve(body.model)
        if not entry.spec.embedding:
            raise ApiError(400, f"the model {entry.alias!r} computes no embeddings: start it with "
                                "--embedding (or \"embedding\": true in its config)", param="input")
        inputs = _inputs(body.input)
        with await state.lease(body.model) as lease:
            n_embd = lease.llm.engine.model.n_embd
            if body.dimensions is not None and body.dimensions != n_embd:
                raise ApiError(400, f"dimensions={body.dimensions} is not supported: this model's "
                                    f"embeddings have {n_embd} dimensions (omit dimensions)",
                               param="dimensions")
            work = lease.llm.aembed(inputs, numpy=True, return_count=True)
            vectors, n_tokens = await run_request(request, work, state.settings.request_timeout)
    except ClientGone:
        return Response(status_code=499)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return JSONResponse(shapes.embeddings(entry.alias, vectors, n_tokens, body.encoding_format))


@router.get("/v1/models")
async def models(request: Request) -> Response:
    """Every configured model, with its status (loaded, loading, unloaded, failed and why)."""
    state = server_state(request)
    return JSONResponse(shapes.models([e.alias for e in state.pool.entries], state.created,
                                      meta=[e.describe() for e in state.pool.entries]))


def _inputs(value: Any) -> list[Any]:
    """An embeddings ``input`` as a list of texts or token lists."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise ApiError(400, "input is empty", param="input")
    if all(isinstance(v, int) for v in value):  # one tokenized input
        return [value]
    return list(value)
