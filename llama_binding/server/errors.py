"""Errors in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``, with the
status a client expects: what the caller sent wrong is a 400 (never a 500), a full queue a
503 with ``Retry-After``, a request past its time a 504."""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse

from ..errors import (
    ClosedError,
    ContextOverflowError,
    LlamaError,
    QueueFullError,
    RpcError,
    SamplerError,
    TemplateError,
    TokenizeError,
    UnsupportedModelError,
)

__all__ = ["ApiError", "error_body", "error_response", "install_handlers", "shutting_down", "status_of"]

logger = logging.getLogger("llama_binding.server")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 413: "invalid_request_error", 429: "rate_limit_error",
          501: "not_implemented_error", 503: "unavailable_error", 504: "timeout_error"}


class ApiError(Exception):
    """An error the server answers itself (a status, a message, OpenAI's code and param)."""

    def __init__(self, status: int, message: str, code: Optional[str] = None, param: Optional[str] = None,
                 headers: Optional[dict[str, str]] = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param = status, message, code, param
        self.headers = headers


def shutting_down() -> ApiError:
    return ApiError(503, "the server is shutting down", code="shutting_down", headers={"Retry-After": "5"})


def error_body(status: int, message: str, code: Optional[str] = None,
               param: Optional[str] = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "server_error"), "param": param,
                      "code": code}}


def error_response(status: int, message: str, code: Optional[str] = None, param: Optional[str] = None,
                   headers: Optional[dict[str, str]] = None) -> JSONResponse:
    return JSONResponse(error_body(status, message, code, param), status_code=status, headers=headers)


def status_of(exc: BaseException) -> ApiError:
    """The API error an exception of the library (or of a request's values) stands for."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, HTTPException):  # raised while the body was read (413)
        detail = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        return ApiError(exc.status_code, detail, headers=dict(exc.headers or {}))
    if isinstance(exc, ContextOverflowError):
        return ApiError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, QueueFullError):
        return ApiError(503, f"the server is busy: {exc}", code="queue_full", headers={"Retry-After": "1"})
    if isinstance(exc, ClosedError):
        return shutting_down()
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
        return ApiError(504, "the request took longer than the server's request timeout", code="timeout")
    if isinstance(exc, (SamplerError, TemplateError, TokenizeError, UnsupportedModelError, ValueError,
                        TypeError, KeyError, ValidationError)):
        return ApiError(400, str(exc) or type(exc).__name__)
    if isinstance(exc, RpcError):  # a worker of the model was lost: the model is reloaded next time
        logger.error("request failed: %s", exc)
        return ApiError(503, str(exc), code="rpc_worker_lost", headers={"Retry-After": "5"})
    if isinstance(exc, LlamaError):
        logger.error("request failed: %s", exc)
        return ApiError(500, str(exc), code="engine_error")
    logger.exception("unexpected error", exc_info=exc)
    return ApiError(500, f"internal error: {type(exc).__name__}", code="internal_error")


def install_handlers(app: FastAPI) -> None:
    """Every error of every route in OpenAI's shape."""

    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        e = status_of(exc)
        return error_response(e.status, e.message, e.code, e.param, e.headers)

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        first = errors[0] if errors else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        message = f"{where}: {first.get('msg', 'invalid request')}" if where else first.get("msg", "invalid")
        if first.get("type") == "json_invalid":
            message = "the request body is not valid JSON"
        return error_response(400, message, param=where or None)

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        status = getattr(exc, "status_code", 500)
        detail = getattr(exc, "detail", str(exc))
        message = detail if isinstance(detail, str) else json.dumps(detail)
        if status == 404:
            message = f"no route {request.method} {request.url.path}"
        return error_response(status, message, headers=getattr(exc, "headers", None))

    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, api_error)
