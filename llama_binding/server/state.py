"""What one app holds: its settings, the model (loaded in the background), the metrics,
and the shutdown state. Routes reach it through ``request.app.state.server``; nothing is
module-global, so several apps (tests, P11's pool) live in one process."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, Optional

import anyio
from starlette.requests import Request

from ..aio import AsyncLlama
from .errors import ApiError, shutting_down
from .metrics import ServerMetrics
from .settings import ServerSettings

__all__ = ["ServerState", "server_state"]

logger = logging.getLogger("llama_binding.server")


class ServerState:
    """The model and the lifecycle of one app (see the module docstring)."""

    def __init__(self, settings: ServerSettings, llm: Optional[AsyncLlama] = None) -> None:
        self.settings = settings
        self.llm = llm
        self.owns_llm = llm is None
        self.error: Optional[str] = None
        self.draining = False
        self.created = int(time.time())
        self.metrics = ServerMetrics(lambda: self.llm)
        self.shutdown: Optional[anyio.Event] = None
        #: called when the model cannot be loaded (``serve`` stops the server then)
        self.on_fatal: Optional[Callable[[], None]] = None
        #: called with the model once it is loaded (the app publishes it as ``app.state.llm``)
        self.on_loaded: Optional[Callable[[AsyncLlama], None]] = None
        if llm is not None:
            llm.observers.append(self.metrics.observe)

    @property
    def names(self) -> set[str]:
        """The model names a request may give."""
        path = self.settings.model
        return {self.settings.alias, path, os.path.basename(path)}

    async def load(self) -> None:
        """Load the model in a worker thread (``/health`` answers 503 meanwhile)."""
        try:
            llm = await asyncio.to_thread(AsyncLlama, self.settings.model, **self.settings.llama_kwargs())
        except Exception as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            logger.error("could not load %s: %s", self.settings.model, self.error)
            if self.on_fatal is not None:
                self.on_fatal()
            return
        llm.observers.append(self.metrics.observe)
        self.llm = llm
        if self.on_loaded is not None:
            self.on_loaded(llm)
        logger.info("model %s loaded as %r", self.settings.model, self.settings.alias)

    def ready(self, model: Optional[str] = None) -> AsyncLlama:
        """The model for a request naming ``model`` (503 while loading or draining, 404 for
        another model's name)."""
        if self.draining:
            raise shutting_down()
        if model is not None and model not in self.names:
            raise ApiError(404, f"the model {model!r} does not exist; this server has "
                                f"{self.settings.alias!r}", code="model_not_found", param="model")
        if self.llm is None:
            message = "the model is loading" if self.error is None else \
                f"the model failed to load: {self.error}"
            raise ApiError(503, message, code="loading", headers={"Retry-After": "1"})
        return self.llm

    def check_n(self, n: int) -> None:
        if n > self.settings.n_seq_max:
            raise ApiError(400, f"n={n} exceeds this server's {self.settings.n_seq_max} sequence slots",
                           param="n")

    async def drain_on_shutdown(self) -> None:
        """On SIGTERM (sse-starlette sets :attr:`shutdown`): refuse new requests, give the
        streams in flight ``drain_timeout`` seconds, then end the rest (an error event and
        ``[DONE]``) by closing the model."""
        if self.shutdown is None:
            return
        await self.shutdown.wait()
        self.draining = True
        logger.info("shutting down: %.0f s for the requests in flight", self.settings.drain_timeout)
        await asyncio.sleep(max(self.settings.drain_timeout - 1.0, 0.0))
        await self.close()

    async def close(self) -> None:
        llm, self.llm = self.llm, None
        if llm is not None and self.owns_llm:
            await asyncio.to_thread(llm.close)


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state
