"""The app factory: ``create_app(settings)`` builds a FastAPI app with no global state.

One model loads in the background when the app starts (``/health`` is 503 until then);
many load when first asked for (``pool.py``);
routes are ``routes/openai.py`` and ``routes/extras.py``; API keys, the body limit and CORS
are pure ASGI middleware around them; every error is OpenAI-shaped (``errors.py``).
:func:`serve` runs it with uvicorn, draining on SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Optional

import anyio
import uvicorn
from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from .. import __version__
from ..aio import AsyncLlama
from .errors import install_handlers
from .middleware import ApiKeyMiddleware, BodyLimitMiddleware
from .pool import ModelEntry
from .routes import extras, openai
from .settings import ServerSettings
from .state import ServerState

__all__ = ["create_app", "serve"]

logger = logging.getLogger("llama_binding.server")


def create_app(settings: ServerSettings, llm: Optional[AsyncLlama] = None) -> FastAPI:
    """An app serving the models of ``settings`` (the first one may be ``llm``, already
    loaded, which the caller keeps and closes). ``app.state.server`` is its
    :class:`~.state.ServerState`; ``app.state.llm`` the first model while it is loaded."""
    state = ServerState(settings, llm)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.shutdown = anyio.Event()
        tasks = [asyncio.create_task(state.drain_on_shutdown()), asyncio.create_task(state.start()),
                 asyncio.create_task(state.pool.keep_alive_loop())]
        hup = _on_sighup(lambda: tasks.append(asyncio.create_task(state.reload_config())))
        try:
            yield
        finally:
            hup()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await state.close()

    app = FastAPI(title="llama-binding", version=__version__, lifespan=lifespan, docs_url=None,
                  redoc_url=None, openapi_url=None)
    app.state.server = state
    app.state.llm = llm

    def published(entry: ModelEntry, loaded: AsyncLlama) -> None:
        if entry is state.pool.default:
            app.state.llm = loaded

    state.pool.on_loaded.append(published)
    install_handlers(app)
    app.include_router(openai.router)
    app.include_router(extras.router)
    public = {"/health"} | ({"/metrics"} if settings.metrics_public else set())
    app.add_middleware(BodyLimitMiddleware, limit=settings.max_body_bytes)
    keys = settings.api_keys()
    keys += settings.admin_api_key if keys else []  # an admin key is an API key too
    app.add_middleware(ApiKeyMiddleware, keys=keys, public=public)
    app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                       allow_headers=["*"], expose_headers=["Retry-After"])
    return app


def _on_sighup(handler: Callable[[], None]) -> Callable[[], None]:
    """Call ``handler`` on the running loop at each SIGHUP (the config file is read again);
    returns the undo. Only a main thread's loop can take signals: elsewhere (tests) nothing."""
    loop = asyncio.get_running_loop()
    if not hasattr(signal, "SIGHUP") or threading.current_thread() is not threading.main_thread():
        return lambda: None
    try:
        loop.add_signal_handler(signal.SIGHUP, handler)
    except (NotImplementedError, RuntimeError, ValueError):
        return lambda: None

    def undo() -> None:
        loop.remove_signal_handler(signal.SIGHUP)

    return undo


class _Server(uvicorn.Server):
    """uvicorn's server, except that a SIGTERM it drained for is not raised again at exit:
    a server that shut down as asked exits 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def serve(settings: ServerSettings) -> int:
    """Run the server until SIGINT/SIGTERM; the process's exit code (1: the model failed
    to load, 2: no such model file)."""
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if settings.model is not None and not Path(settings.model).is_file():
        logger.error("no model file at %s", settings.model)
        return 2
    # the engine's worker thread takes the GIL back after every decode: with uvicorn's
    # event loop busy streaming, the default 5 ms switch interval would be that wait
    sys.setswitchinterval(settings.switch_interval)
    app = create_app(settings)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level,
                            timeout_graceful_shutdown=int(settings.drain_timeout) + 5, lifespan="on")
    server = _Server(config)
    state: ServerState = app.state.server
    failed = []

    def fatal() -> None:
        failed.append(True)
        server.should_exit = True

    state.on_fatal = fatal
    names = ", ".join(f"{m.alias} ({m.model})" for m in settings.model_specs())
    logger.info("serving %s on http://%s:%d", names, settings.host, settings.port)
    server.run()
    return 1 if failed else 0
