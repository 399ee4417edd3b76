"""What one app holds: its settings, its models (a :class:`~.pool.ModelPool`), the metrics,
and the shutdown state. Routes reach it through ``request.app.state.server``; nothing is
module-global, so several apps (tests) live in one process.

One model (``--model``) is loaded when the app starts (``/health`` is 503 until then, and
the server stops if it cannot be loaded); many (``models`` in a config file, or
``--models-dir``) are loaded when a request first names them."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

import anyio
from starlette.requests import Request

from ..aio import AsyncLlama
from .errors import ApiError, shutting_down
from .metrics import ServerMetrics
from .pool import Lease, ModelEntry, ModelPool
from .settings import ServerSettings

__all__ = ["ServerState", "server_state"]

logger = logging.getLogger("llama_binding.server")


class ServerState:
    """The models and the lifecycle of one app (see the module docstring)."""

    def __init__(self, settings: ServerSettings, llm: Optional[AsyncLlama] = None) -> None:
        self.settings = settings
        def mib(value: Optional[float]) -> Optional[int]:
            return None if value is None else int(value * 2**20)

        self.pool = ModelPool(settings.model_specs(), max_models=settings.max_models,
                              memory_budget=mib(settings.memory_budget_mb),
                              gpu_memory_budget=mib(settings.gpu_memory_budget_mb),
                              max_waiting=settings.max_waiting, load_timeout=settings.request_timeout)
        #: one model, loaded at start: the server is not healthy without it
        self.single = settings.models == [] and settings.models_dir is None
        self.draining = False
        self.created = int(time.time())
        self.metrics = ServerMetrics(self.pool)
        self.shutdown: Optional[anyio.Event] = None
        #: called when the one model cannot be loaded (``serve`` stops the server then)
        self.on_fatal: Optional[Callable[[], None]] = None
        self.pool.on_loaded.append(
            lambda entry, loaded: loaded.observers.append(self.metrics.observer(entry.alias)))
        if llm is not None:
            self.pool.adopt(self.pool.default, llm)

    @property
    def llm(self) -> Optional[AsyncLlama]:
        """The first model's engine while it is loaded."""
        loaded = self.pool.default.loaded
        return None if loaded is None else loaded.llm

    @property
    def error(self) -> Optional[str]:
        """Why the one model could not be loaded."""
        return self.pool.default.error if self.single else None

    async def start(self) -> None:
        """Load the one model (a failure stops the server: ``on_fatal``)."""
        if not self.single or self.llm is not None:
            return
        try:
            await self.pool.load(self.pool.default)
        except ApiError:
            if self.on_fatal is not None:
                self.on_fatal()

    @property
    def healthy(self) -> bool:
        return not self.draining and (not self.single or self.llm is not None)

    async def lease(self, model: Optional[str]) -> Lease:
        """A lease on the model a request names (503 while draining or loading the one model,
        404 for an unknown name); release it when the answer is sent."""
        if self.draining:
            raise shutting_down()
        entry = self.pool.resolve(model)
        if self.single and entry.loaded is None and entry.status != "unloaded":  # (unloaded: keep_alive)
            message = "the model is loading" if entry.error is None else \
                f"the model failed to load: {entry.error}"
            raise ApiError(503, message, code="loading", headers={"Retry-After": "1"})
        return await self.pool.lease(entry.alias)

    @staticmethod
    def check_n(n: int, entry: ModelEntry) -> None:
        if n > entry.spec.n_seq_max:
            raise ApiError(400, f"n={n} exceeds the {entry.spec.n_seq_max} sequence slots of {entry.alias!r}",
                           param="n")

    async def reload_config(self) -> None:
        """SIGHUP: read the config file again and apply its models (:meth:`ModelPool.apply`)."""
        try:
            fresh = self.settings.reloaded()
        except Exception as exc:  # a broken file changes nothing
            logger.error("config not reloaded: %s", exc)
            return
        if fresh is None:
            logger.warning("SIGHUP: no config file to reload")
            return
        await self.pool.apply(fresh.model_specs())
        logger.info("config reloaded: %s", ", ".join(e.alias for e in self.pool.entries))

    async def drain_on_shutdown(self) -> None:
        """On SIGTERM (sse-starlette sets :attr:`shutdown`): refuse new requests, give the
        streams in flight ``drain_timeout`` seconds, then end the rest (an error event and
        ``[DONE]``) by closing the models."""
        if self.shutdown is None:
            return
        await self.shutdown.wait()
        self.draining = True
        logger.info("shutting down: %.0f s for the requests in flight", self.settings.drain_timeout)
        await asyncio.sleep(max(self.settings.drain_timeout - 1.0, 0.0))
        await self.close()

    async def close(self) -> None:
        await self.pool.close()


def server_state(request: Request) -> ServerState:
    state: ServerState = request.app.state.server
    return state
