"""RPC workers for tests: ``llama-binding rpc-server`` child processes on their own loopback
addresses, started and stopped within bounds."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from llama_binding import RpcError
from llama_binding.capi import _loader
from llama_binding.errors import LibraryLoadError
from llama_binding.rpc import check_server

HOSTS = ("127.0.0.2", "127.0.0.3")
START_S = 30.0


def rpc_built() -> bool:
    try:
        _loader.load("ggml-rpc")
    except LibraryLoadError:
        return False
    return True


needs_rpc = pytest.mark.skipif(not rpc_built(), reason="built without the RPC backend (-DGGML_RPC=off)")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def worker(host: str, *extra: str, prefix: tuple[str, ...] = (),
           port: int = 0) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """``llama-binding rpc-server`` on ``host`` (a child process, run by ``prefix``), once it
    answers; on ``port``, else a free one."""
    port = port or free_port("127.0.0.1" if prefix else host)
    proc = subprocess.Popen([*prefix, sys.executable, "-m", "llama_binding", "rpc-server", "--host", host,
                             "--port", str(port), "--threads", "1", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    endpoint = f"{host}:{port}"
    try:
        deadline = time.monotonic() + START_S
        while True:
            assert proc.poll() is None, proc.communicate()[0].decode()
            with contextlib.suppress(RpcError):
                check_server(endpoint, timeout=1.0)
                break
            assert time.monotonic() < deadline, f"the worker on {endpoint} did not answer in {START_S} s"
            time.sleep(0.1)
        yield endpoint, proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
