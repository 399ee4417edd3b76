"""llama.cpp's RPC backend: workers started with ``llama-binding rpc-server`` as child
processes on their own loopback addresses (127.0.0.2, 127.0.0.3), a model split over them and
the local CPU, and what the client checks before ggml-rpc connects (which would stop the
process on a failure). Every wait is bounded.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _netns import NS, NS_IP, namespace, set_delay
from _netns import available as netns_available
from _rpc_workers import HOSTS, free_port, needs_rpc, rpc_built, worker

from llama_binding import Llama, RpcError, system_info
from llama_binding.rpc import check_server, parse_servers


@pytest.fixture(scope="module")
def workers() -> Iterator[list[str]]:
    if not rpc_built():
        pytest.skip("built without the RPC backend (-DGGML_RPC=off)")
    with worker(HOSTS[0]) as (a, _), worker(HOSTS[1]) as (b, _):
        yield [a, b]


# --- no worker needed ------------------------------------------------------------------------


def test_parse_servers() -> None:
    assert parse_servers("127.0.0.2:50052, 127.0.0.3:50053") == ["127.0.0.2:50052", "127.0.0.3:50053"]
    assert parse_servers(["[::1]:5"]) == ["[::1]:5"]
    for bad in ("", "host", "host:0", "host:70000", "a b:1", "127.0.0.2:1,127.0.0.2:1"):
        with pytest.raises(ValueError):
            parse_servers(bad)
    with pytest.raises(TypeError):
        parse_servers([1])  # type: ignore[list-item]


@contextlib.contextmanager
def fake_server(answer: bytes | None) -> Iterator[str]:
    """A TCP server on 127.0.0.2 that sends ``answer`` to each client (None: never answers)."""
    srv = socket.socket()
    srv.bind(("127.0.0.2", 0))
    srv.listen()
    stop = threading.Event()

    def loop() -> None:
        srv.settimeout(0.1)
        held = []
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            held.append(conn)
            if answer is not None:
                with contextlib.suppress(OSError):
                    conn.sendall(answer)
        for c in held:
            c.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.2:{srv.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        srv.close()


@needs_rpc
def test_what_is_no_worker_is_a_clear_error_not_an_abort(stories260k: Path) -> None:
    """ggml-rpc stops the process when a worker does not answer its handshake: the client
    checks first. Each case raises RpcError, and the process goes on loading local models."""
    closed = f"127.0.0.2:{free_port('127.0.0.2')}"
    with pytest.raises(RpcError, match="cannot reach"):
        Llama(str(stories260k), rpc_servers=closed, n_ctx=64)
    with fake_server(b"HTTP/1.1 400 Bad Request\r\n\r\n") as http, \
            pytest.raises(RpcError, match="not an RPC worker"):
        check_server(http, timeout=2.0)
    with fake_server(None) as silent, pytest.raises(RpcError, match="did not answer"):
        check_server(silent, timeout=0.5)
    with Llama(str(stories260k), n_ctx=64) as llm:
        assert llm("Once", max_tokens=2, temperature=0.0)["choices"][0]["text"]


# --- two workers -----------------------------------------------------------------------------


def _greedy(llm: Llama) -> str:
    return llm("Once upon a time", max_tokens=24, temperature=0.0)["choices"][0]["text"]


def test_split_over_two_workers_and_the_cpu_equals_local(workers: list[str], smollm2: Path) -> None:
    with Llama(str(smollm2), n_ctx=256, n_gpu_layers=0, n_threads=1) as local:
        want = _greedy(local)
        n_layer = local.engine.model.n_layer
    # the first n_layer - 4 layers on the workers' CPUs (split by their free memory), the rest here
    with Llama(str(smollm2), n_ctx=256, rpc_servers=",".join(workers), n_gpu_layers=n_layer - 4,
               n_threads=1) as split:
        assert _greedy(split) == want
        remote = [d for d in system_info().devices if d.type == "rpc"]
        assert {d.name.split("[")[-1].rstrip("]") for d in remote} >= set(workers)
        assert all(d.memory_total > 0 for d in remote)
    with Llama(str(smollm2), n_ctx=256, n_gpu_layers=0, n_threads=1) as again:  # local models stay local
        assert _greedy(again) == want


def test_a_busy_worker_is_refused_at_load(workers: list[str], stories260k: Path) -> None:
    """A worker serves one client at a time: while this process has a model on it, another
    process is refused with a clear error (and ends normally) instead of waiting for ever."""
    code = ("import sys\nfrom llama_binding import Llama, RpcError\ntry:\n"
            f"    Llama({str(stories260k)!r}, rpc_servers={workers[0]!r}, n_ctx=64)\n"
            "except RpcError as e:\n    print('REFUSED', e)\n")
    with Llama(str(stories260k), rpc_servers=workers[0], n_ctx=64) as held:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
        assert held("Once", max_tokens=2, temperature=0.0)["choices"]  # the holder goes on
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "REFUSED" in proc.stdout and "did not answer" in proc.stdout


@needs_rpc
def test_worker_stops_cleanly_on_sigterm() -> None:
    with worker(HOSTS[1]) as (_, proc):
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
        assert b"stopped" in proc.communicate()[0]


@needs_rpc
def test_worker_refuses_a_port_in_use_and_an_unknown_device() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.2", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run([sys.executable, "-m", "llama_binding", "rpc-server", "--host", "127.0.0.2",
                               "--port", str(port)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "could not listen" in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "llama_binding", "rpc-server", "--device", "NOPE"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "no device named 'NOPE'" in proc.stderr


def test_off_loopback_is_warned_about() -> None:
    from llama_binding.cli import rpc_server

    assert rpc_server._is_loopback("127.0.0.3") and rpc_server._is_loopback("::1")
    assert rpc_server._is_loopback("localhost")
    assert not rpc_server._is_loopback("0.0.0.0") and not rpc_server._is_loopback("192.168.1.5")
    assert "no authentication" in rpc_server.UNSAFE


@needs_rpc
def test_a_worker_in_another_network_namespace(smollm2: Path) -> None:
    """A worker in a network namespace of its own, reached through a veth pair, with 5 ms of
    round trip added (tc netem, where the kernel has it): the same greedy output as local
    (bench/rpc.py --netns measures what the latency costs)."""
    if not netns_available():
        pytest.skip("ip netns is not permitted on this machine")
    with Llama(str(smollm2), n_ctx=256, n_gpu_layers=0, n_threads=1) as local:
        want = _greedy(local)
    with namespace(), worker(NS_IP, prefix=("ip", "netns", "exec", NS)) as (endpoint, _):
        set_delay(5)  # (False where the kernel has no netem: the namespace alone is tested)
        with Llama(str(smollm2), n_ctx=256, rpc_servers=endpoint, n_gpu_layers=-1, n_threads=1) as remote:
            assert _greedy(remote) == want


@needs_rpc
def test_a_worker_gone_between_loads_is_an_error_not_an_abort(stories260k: Path) -> None:
    """ggml-rpc keeps what it knows of a worker for the life of the process: after the worker
    stopped, a new model naming it must be refused by the handshake (ggml-rpc would connect
    and stop the process), and system_info() must not ask the worker for its memory again."""
    with worker(HOSTS[1]) as (endpoint, _):
        with Llama(str(stories260k), rpc_servers=endpoint, n_ctx=64) as llm:
            assert llm("Once", max_tokens=2, temperature=0.0)["choices"]
    with pytest.raises(RpcError, match="cannot reach"):
        Llama(str(stories260k), rpc_servers=endpoint, n_ctx=64)
    assert any(d.type == "rpc" and endpoint in d.name for d in system_info().devices)


# --- a worker lost while a model uses it ------------------------------------------------------


def _stream(llm: Llama) -> Iterator[Any]:
    """A long greedy completion, streamed (the end-of-text token barred: it runs its course)."""
    return iter(llm("Once upon a time", max_tokens=400, temperature=0.0, stream=True,
                    logit_bias={llm.token_eos(): -100.0}))


@needs_rpc
def test_a_worker_killed_mid_generation_is_an_error_not_an_abort(stories260k: Path) -> None:
    """ggml-rpc aborts the process when a worker's connection breaks; through the relay the
    generation in flight raises RpcError, the model refuses every later call, closes cleanly,
    and local models go on. Once the worker is back (the same address), a new model uses it."""
    with Llama(str(stories260k), n_ctx=256, n_gpu_layers=0) as local:
        want = _greedy(local)
    with worker(HOSTS[1]) as (endpoint, proc):
        llm = Llama(str(stories260k), rpc_servers=endpoint, n_ctx=512, n_gpu_layers=-1)
        stream = _stream(llm)
        assert next(stream)["choices"][0]["text"] is not None
        proc.kill()
        proc.wait(10)
        with pytest.raises(RpcError, match="was lost") as lost:
            for _ in stream:
                pass
        assert endpoint in str(lost.value)
        with pytest.raises(RpcError, match="was lost"):
            llm("Once", max_tokens=2)
        with pytest.raises(RpcError, match="close every model that used it"):
            Llama(str(stories260k), rpc_servers=endpoint, n_ctx=64)
        llm.close()
    with Llama(str(stories260k), n_ctx=256, n_gpu_layers=0) as local:
        assert _greedy(local) == want
    port = int(endpoint.rsplit(":", 1)[1])
    with worker(HOSTS[1], port=port) as (again, _), \
            Llama(str(stories260k), rpc_servers=again, n_ctx=256, n_gpu_layers=-1) as back:
        assert _greedy(back) == want


@needs_rpc
def test_a_worker_that_stops_answering_is_an_error_after_the_timeout(
        stories260k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that hangs (SIGSTOP: its connection stays open) fails the generation after
    LLAMA_BINDING_RPC_TIMEOUT seconds, not never."""
    monkeypatch.setenv("LLAMA_BINDING_RPC_TIMEOUT", "2")
    with worker(HOSTS[1]) as (endpoint, proc):
        try:
            with Llama(str(stories260k), rpc_servers=endpoint, n_ctx=512, n_gpu_layers=-1) as llm:
                stream = _stream(llm)
                next(stream)
                proc.send_signal(signal.SIGSTOP)
                start = time.monotonic()
                with pytest.raises(RpcError, match="did not answer in time"):
                    for _ in stream:
                        pass
                assert time.monotonic() - start < 30
        finally:
            proc.send_signal(signal.SIGCONT)


def test_the_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from llama_binding.core import _rpc_relay

    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("LLAMA_BINDING_RPC_TIMEOUT", bad)
        with pytest.raises(RpcError, match="LLAMA_BINDING_RPC_TIMEOUT"):
            _rpc_relay.timeout_s()
    monkeypatch.setenv("LLAMA_BINDING_RPC_TIMEOUT", "0")
    assert _rpc_relay.timeout_s() == 0
    monkeypatch.delenv("LLAMA_BINDING_RPC_TIMEOUT")
    assert _rpc_relay.timeout_s() == _rpc_relay.DEFAULT_TIMEOUT_S
