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
    try:
        body = await parse(request, schema)
        llm = state.ready(body.model)
        state.check_n(body.n)
        call = getattr(llm, method)(**body.to_kwargs(), model=state.settings.alias)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return await answer(request, state, call, body.stream)


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    state = server_state(request)
    try:
        body = await parse(request, EmbeddingRequest)
        llm = state.ready(body.model)
        if not state.settings.embedding:
            raise ApiError(400, "this server computes no embeddings: start it with --embedding",
                           param="input")
        n_embd = llm.engine.model.n_embd
        if body.dimensions is not None and body.dimensions != n_embd:
            raise ApiError(400, f"dimensions={body.dimensions} is not supported: this model's embeddings "
                                f"have {n_embd} dimensions (omit dimensions)", param="dimensions")
        inputs = _inputs(body.input)
        vectors, n_tokens = await run_request(request, llm.aembed(inputs, numpy=True, return_count=True),
                                              state.settings.request_timeout)
    except ClientGone:
        return Response(status_code=499)
    except Exception as exc:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)
    return JSONResponse(shapes.embeddings(state.settings.alias, vectors, n_tokens, body.encoding_format))


@router.get("/v1/models")
async def models(request: Request) -> Response:
    state = server_state(request)
    meta: dict[str, Any] = {"meta": {"path": state.settings.model, "n_ctx": state.settings.n_ctx,
                                     "loaded": state.llm is not None}}
    return JSONResponse(shapes.models([state.settings.alias], state.created, **meta))


def _inputs(value: Any) -> list[Any]:
    """An embeddings ``input`` as a list of texts or token lists."""
    if isinstance(value, str):
        return [value]
    if not value:
        raise ApiError(400, "input is empty", param="input")
    if all(isinstance(v, int) for v in value):  # one tokenized input
        return [value]
    return list(value)
