"""Fixtures for the OpenAI-compatible server: real servers on free loopback ports.

``serve(**settings)`` runs ``create_app(ServerSettings(...))`` with ``uvicorn.Server`` in a
background thread (in process, so tests can read ``app.state.llm``); ``serve_subprocess(args)``
starts ``python -m llama_binding.server`` as a child process (for SIGTERM and CLI tests).
Every wait is bounded; traffic goes only to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

HOST = "127.0.0.1"
STARTUP_S = 60.0
SHUTDOWN_S = 30.0
SMOLLM2_ALIAS = "smollm2"


@dataclass
class Running:
    """A server running in this process."""

    base_url: str
    app: Any
    server: Any
    thread: threading.Thread

    @property
    def llm(self) -> Any:
        return self.app.state.llm

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Wait (bounded) until the engine holds no request."""
        deadline = time.monotonic() + timeout
        while self.llm.n_outstanding and time.monotonic() < deadline:
            time.sleep(0.05)
        assert self.llm.n_outstanding == 0, f"still {self.llm.n_outstanding} requests after {timeout} s"


@dataclass
class Child:
    """A server running as a child process."""

    base_url: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int
    extra: dict[str, Any] = field(default_factory=dict)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_healthy(base_url: str, alive: Any, timeout: float = STARTUP_S) -> None:
    """Poll GET /health until 200; ``alive()`` False (the server died) fails at once."""
    deadline = time.monotonic() + timeout
    last: str = "no answer"
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"server exited before it was healthy (last: {last})")
        try:
            r = httpx.get(f"{base_url}/health", timeout=2.0)
            if r.status_code == 200:
                return
            last = f"{r.status_code} {r.text[:200]}"
        except httpx.HTTPError as e:
            last = repr(e)
        time.sleep(0.2)
    raise TimeoutError(f"{base_url}/health not 200 after {timeout} s (last: {last})")


@contextlib.contextmanager
def serve(**settings: Any) -> Iterator[Running]:
    """Run ``create_app(ServerSettings(**settings))`` on a free loopback port in a thread."""
    import uvicorn

    from llama_binding.server import ServerSettings, create_app

    app = create_app(ServerSettings(**settings))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(app, host=HOST, port=port, lifespan="on", log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name=f"uvicorn-{port}")
    thread.start()
    running = Running(f"http://{HOST}:{port}", app, server, thread)
    try:
        wait_healthy(running.base_url, thread.is_alive)
        yield running
    finally:
        server.should_exit = True
        thread.join(SHUTDOWN_S)
        if thread.is_alive():
            server.force_exit = True
            thread.join(5.0)
        sock.close()
        assert not thread.is_alive(), "uvicorn did not stop within the bound"


@contextlib.contextmanager
def serve_subprocess(args: Sequence[str], env: dict[str, str] | None = None,
                     module: Sequence[str] = ("-m", "llama_binding.server"),
                     port: int | None = None) -> Iterator[Child]:
    """Start ``python -m llama_binding.server ARGS --host 127.0.0.1 --port P``; kill it at the end."""
    port = free_port() if port is None else port
    cmd = [sys.executable, *module, *args, "--host", HOST, "--port", str(port)]
    full_env = {**os.environ, **(env or {})}
    fd, name = tempfile.mkstemp(prefix="llama-binding-server-", suffix=".log")
    log = Path(name)
    with os.fdopen(fd, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env,
                                cwd=str(Path(__file__).resolve().parents[2]))
    child = Child(f"http://{HOST}:{port}", proc, log, port)
    try:
        try:
            wait_healthy(child.base_url, lambda: proc.poll() is None)
        except (RuntimeError, TimeoutError) as e:
            raise AssertionError(f"{e}\ncommand: {cmd}\noutput:\n{child.output()}") from e
        yield child
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10.0)
        with contextlib.suppress(OSError):
            log.unlink()


# --- module-scoped servers ---------------------------------------------------------------


@pytest.fixture(scope="module")
def chat_server(smollm2: Path) -> Iterator[Running]:
    """SmolLM2, 4 slots, 4096 tokens of context, no keys."""
    with serve(model=str(smollm2), model_alias=SMOLLM2_ALIAS, n_seq_max=4, n_ctx=4096) as s:
        yield s


@pytest.fixture(scope="module")
def auth_server(smollm2: Path) -> Iterator[Running]:
    """SmolLM2 behind two API keys ("k" and "k2"); /metrics not public."""
    with serve(model=str(smollm2), model_alias=SMOLLM2_ALIAS, n_seq_max=2, n_ctx=1024,
               api_key=["k", "k2"], metrics_public=False) as s:
        yield s


@pytest.fixture(scope="module")
def embed_server(minilm: Path) -> Iterator[Running]:
    """MiniLM with --embedding."""
    with serve(model=str(minilm), model_alias="minilm", embedding=True, n_seq_max=4) as s:
        yield s


LIMITS = {"n_seq_max": 1, "max_waiting": 0, "max_body_bytes": 4096, "request_timeout": 8.0}


@pytest.fixture(scope="module")
def limits_server(smollm2: Path) -> Iterator[Running]:
    """SmolLM2 with tiny limits: one slot, no queue, 4 KiB bodies, an 8 s request timeout."""
    with serve(model=str(smollm2), model_alias=SMOLLM2_ALIAS, n_ctx=2048, **LIMITS) as s:
        yield s


@pytest.fixture(scope="module")
def stories_server(stories260k: Path) -> Iterator[Running]:
    """stories260K, 4 slots: fast, for concurrency."""
    with serve(model=str(stories260k), model_alias="stories", n_seq_max=4, n_ctx=2048) as s:
        yield s


# --- SSE helpers -------------------------------------------------------------------------


@dataclass
class Event:
    """One server-sent event: its ``event:`` name (None when absent) and its data."""

    event: str | None
    data: str

    def json(self) -> Any:
        import json

        return json.loads(self.data)

    @property
    def is_error(self) -> bool:
        if self.event == "error":
            return True
        if self.data == "[DONE]":
            return False
        try:
            body = self.json()
        except ValueError:
            return False
        return isinstance(body, dict) and "error" in body


def parse_sse(raw: str) -> list[Event]:
    """Split an SSE body into its events, checking the framing: blocks end in a blank line,
    ``:`` lines are comments (keep-alive), every other line is ``data: `` or ``event: ``."""
    raw = raw.replace("\r\n", "\n")
    assert raw.endswith("\n\n"), f"SSE body does not end with a blank line: {raw[-200:]!r}"
    events = []
    for block in raw.split("\n\n")[:-1]:
        name, data = None, []
        for line in block.split("\n"):
            if line.startswith(":"):
                continue
            if line.startswith("event: ") or line.startswith("event:"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("data: "):
                data.append(line[len("data: "):])
            elif line.startswith("id:") or line.startswith("retry:"):
                continue
            else:
                raise AssertionError(f"bad SSE line {line!r} in block {block!r}")
        if data:
            events.append(Event(name, "\n".join(data)))
    return events
