"""Our server with a timeline of each streamed request, for finding where time to first
token goes (a diagnostic: the wrappers cost time themselves, so its figures are not the
bench's).

    python bench/trace_server.py TRACE.txt --model M.gguf ...   # llama_binding.server's flags

Every POST starts a row of marks (seconds since the request's first bytes): the HTTP parse,
the route, the parse of the body, the sampling plan, the prompt's tokens, the sampler chain,
the queueing, the engine's prepare / decode / collect, the hand-over to the event loop, the
response's start and the first chunk with text written. At exit TRACE.txt gets each mark's
median over the requests after the first 20, in order (chat_turns.py --trace runs it).
"""

from __future__ import annotations

import atexit
import functools
import inspect
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

from uvicorn.protocols.http import httptools_impl as http

import llama_binding.aio as aio
from llama_binding.core import batch
from llama_binding.generation import batching
from llama_binding.generation import engine as eng
from llama_binding.server import main as server_main
from llama_binding.server import state
from llama_binding.server.routes import openai as routes

P = time.perf_counter
row: dict[str, float] = {}
rows: list[dict[str, float]] = []


def mark(key: str) -> None:
    row.setdefault(key, P())


def wrap(owner: Any, name: str, tag: str) -> None:
    """``owner.name`` marking ``tag<`` when called and ``tag>`` when it returns."""
    f: Callable[..., Any] = getattr(owner, name)
    if inspect.iscoroutinefunction(f):
        @functools.wraps(f)
        async def timed_async(*a: Any, **k: Any) -> Any:
            mark(tag + "<")
            r = await f(*a, **k)
            mark(tag + ">")
            return r
        setattr(owner, name, timed_async)
        return

    @functools.wraps(f)
    def timed(*a: Any, **k: Any) -> Any:
        mark(tag + "<")
        r = f(*a, **k)
        mark(tag + ">")
        return r
    setattr(owner, name, timed)


def install() -> None:
    received = http.HttpToolsProtocol.data_received

    def data_received(self: Any, data: bytes) -> None:
        if data.startswith(b"POST"):
            if row:
                rows.append(dict(row))
            row.clear()
            mark("arrive")
        received(self, data)
    http.HttpToolsProtocol.data_received = data_received  # type: ignore[method-assign]
    wrap(http.HttpToolsProtocol, "on_message_complete", "body")
    wrap(routes, "_generate", "route")
    wrap(routes, "parse", "parse")
    wrap(state.ServerState, "lease", "lease")
    wrap(eng.Engine, "sampling", "sampling")
    wrap(aio, "prompt_tokens", "tokens")
    wrap(eng.Engine, "request_chain", "chain")
    wrap(aio.AsyncLlama, "_enqueue", "enqueue")
    wrap(batching.BatchEngine, "prepare", "prepare")
    wrap(batching.BatchEngine, "_admit", "admit")
    wrap(batching.BatchEngine, "_cached_slot", "cached-slot")
    wrap(batching.BatchEngine, "_reuse", "reuse")
    wrap(batch.Batch, "add_sequence", "batch-add")
    wrap(batching.BatchEngine, "decode", "decode")
    wrap(batching.BatchEngine, "collect", "collect")
    dispatch = aio._dispatch

    def dispatched(items: Any) -> None:
        mark("loop")
        dispatch(items)
    aio._dispatch = dispatched
    send = http.RequestResponseCycle.send

    async def sent(self: Any, message: Any) -> None:
        if message.get("type") == "http.response.start":
            mark("headers")
        body = message.get("body", b"")
        if body and (b'"text": "' in body or b'"content": "' in body) \
                and b'"text": ""' not in body and b'"content": ""' not in body:
            mark("first-text")
        await send(self, message)
    http.RequestResponseCycle.send = sent  # type: ignore[method-assign]


def report(path: Path) -> None:
    done = [r for r in rows[20:] if "first-text" in r]
    if not done:
        path.write_text("no request traced\n")
        return
    keys = sorted({k for r in done for k in r},
                  key=lambda k: statistics.median(r[k] - r["arrive"] for r in done if k in r))
    lines = [f"{len(done)} requests: median ms from the request's first bytes"]
    for k in keys:
        v = [(r[k] - r["arrive"]) * 1e3 for r in done if k in r]
        lines.append(f"{k:12s} {statistics.median(v):8.3f}  ({len(v)})")
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    out = Path(sys.argv.pop(1))
    install()
    atexit.register(report, out)
    sys.exit(server_main())
