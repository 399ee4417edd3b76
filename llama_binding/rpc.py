"""llama.cpp's RPC backend (``ggml-rpc``): devices of other processes or machines, used as if
they were local.

A worker (:func:`serve`, ``llama-binding rpc-server``) exposes its devices' memory and
compute over TCP; a client names workers with ``Llama(..., rpc_servers="host:port,...")``
and the model's layers are split over their devices (and the local ones) like over local
GPUs (``tensor_split``, ``n_gpu_layers``). The protocol has no authentication and no
encryption: run workers only on a network you trust.

ggml-rpc stops the client process when a worker fails; this module keeps that from
happening. Each worker is reached with the protocol's handshake (:func:`check_server`)
before ggml-rpc connects to it, so an address that does not answer, answers something else,
is busy with another client or speaks another protocol version is a
:class:`~llama_binding.errors.RpcError` at load. ggml-rpc then reaches the worker through a
relay of ours on 127.0.0.1 (``core/_rpc_relay.py``): a worker that dies, or does not answer
within ``LLAMA_BINDING_RPC_TIMEOUT`` seconds (300), while a model uses it makes that model's
next decode raise :class:`~llama_binding.errors.RpcError`; the process and its other models
go on.

The remote devices are kept apart from ggml's device registry: a model gets them only
when it names their workers, so the other models of a process stay local.
"""

from __future__ import annotations

import ctypes
import os
import re
import socket
import struct
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Union

from . import _backend, capi
from .capi import _loader
from .core import _rpc_relay
from .errors import LibraryLoadError, RpcError

__all__ = ["RemoteDevice", "check_server", "local_offload_devices", "parse_servers",
           "remote_devices", "serve", "track", "worker_devices"]

_HELLO = 14  # RPC_CMD_HELLO: the first command of every connection, fixed across versions
_CAPS_SIZE = 24  # RPC_CONN_CAPS_SIZE
_ENDPOINT = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})$")
_lock = threading.Lock()
_added: dict[str, list[Any]] = {}  # endpoint -> its devices (ggml_backend_dev_t), once per process
_users: dict[str, weakref.WeakSet[Any]] = {}  # endpoint -> the models of this process on it


@dataclass(frozen=True)
class RemoteDevice:
    """A device of an RPC worker."""

    endpoint: str
    name: str
    """ggml's name of the device and its worker, ``RPC0[host:port]`` (each worker numbers its own)"""
    description: str
    memory_free: int
    memory_total: int


def parse_servers(servers: Union[str, Sequence[str]]) -> list[str]:
    """``"host:port,host:port"`` (or a list of them) as a list of endpoints, checked."""
    items = servers.split(",") if isinstance(servers, str) else list(servers)
    out = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"rpc_servers entries must be strings, not {type(item).__name__}")
        item = item.strip()
        m = _ENDPOINT.match(item)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError(f"rpc_servers: {item!r} is not host:port")
        out.append(item)
    if not out:
        raise ValueError("rpc_servers is empty")
    if len(set(out)) != len(out):
        raise ValueError(f"rpc_servers names a worker twice: {servers!r}")
    return out


def _recv(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        piece = sock.recv(n - len(data))
        if not piece:
            raise ConnectionError("the connection was closed")
        data += piece
    return data


def check_server(endpoint: str, timeout: float = 5.0) -> tuple[int, int, int]:
    """Reach the worker at ``endpoint`` with the protocol's handshake and close again; its
    protocol version. :class:`RpcError` when it does not answer within ``timeout`` seconds
    (also when it is serving another client: a worker takes one at a time), answers
    something else or speaks another major version."""
    host, _, port = endpoint.rpartition(":")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(struct.pack("<BQ", _HELLO, _CAPS_SIZE) + bytes(_CAPS_SIZE))
            (size,) = struct.unpack("<Q", _recv(sock, 8))
            if size != 4 + _CAPS_SIZE:
                raise RpcError(f"{endpoint} is not an RPC worker of this llama.cpp (its handshake "
                               f"answer has {size} bytes)")
            major, minor, patch = _recv(sock, size)[:3]
    except socket.timeout:  # (TimeoutError from Python 3.10 on)
        raise RpcError(f"the RPC worker {endpoint} did not answer within {timeout:g} s (is it "
                       "serving another client? a worker takes one at a time)") from None
    except OSError as exc:
        raise RpcError(f"cannot reach the RPC worker {endpoint}: {exc.strerror or exc}") from None
    want = int(capi.RPC_PROTO_MAJOR_VERSION), int(capi.RPC_PROTO_MINOR_VERSION)
    if major != want[0] or minor > want[1]:
        raise RpcError(f"the RPC worker {endpoint} speaks protocol {major}.{minor}.{patch}, this build "
                       f"{want[0]}.{want[1]}: run a worker of the same llama.cpp version")
    return major, minor, patch


def _rpc_available() -> None:
    try:
        _loader.load("ggml-rpc")
    except LibraryLoadError:
        raise RpcError("this build has no RPC backend: reinstall with CMAKE_ARGS=\"-DGGML_RPC=on\" "
                       "pip install llama-binding") from None


def remote_devices(servers: Union[str, Sequence[str]], timeout: float = 5.0) -> list[Any]:
    """The devices (``ggml_backend_dev_t``) of the workers ``servers`` names, each worker
    checked first (:func:`check_server`)."""
    endpoints = parse_servers(servers)
    _backend.init_backends()
    _rpc_available()
    devices: list[Any] = []
    with _lock:
        for endpoint in endpoints:
            relay = _rpc_relay.relay_for(endpoint)
            # a worker that a model of this process uses is connected to already (and busy
            # with us: the handshake would wait), unless it was lost; any other is checked,
            # also after an earlier use, since ggml-rpc connects again
            if _in_use(endpoint):
                if relay.failures != relay.base:
                    raise RpcError(f"{relay.lost_error()}; close every model that used it before "
                                   "loading another on it")
            else:
                check_server(endpoint, timeout)
                relay.base = relay.failures
            if endpoint not in _added:
                reg = capi.ggml_backend_rpc_add_server(relay.address.encode())
                if not reg:
                    raise RpcError(f"ggml-rpc could not add the worker {endpoint}")
                count = capi.ggml_backend_reg_dev_count(reg)
                devs = [capi.ggml_backend_reg_dev_get(reg, i) for i in range(count)]
                # their memory now, while the worker answers (for system_info())
                _backend.rpc_devices.extend(_describe(endpoint, dev) for dev in devs)
                _rpc_relay.remember_devices(relay, devs)
                _added[endpoint] = devs
            devices.extend(_added[endpoint])
    return devices


def _in_use(endpoint: str) -> bool:
    return any(not m.closed for m in _users.get(endpoint, ()))


def track(model: Any, servers: Union[str, Sequence[str]]) -> None:
    """Note that ``model`` (a :class:`~llama_binding.core.Model`) uses the workers ``servers``
    names, until it is closed (see :func:`remote_devices`)."""
    with _lock:
        for endpoint in parse_servers(servers):
            _users.setdefault(endpoint, weakref.WeakSet()).add(model)


def local_offload_devices() -> list[Any]:
    """The registry's GPU and integrated-GPU devices (what a model offloads to by default)."""
    return _backend.local_gpus()


def _describe(endpoint: str, dev: Any) -> RemoteDevice:
    free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
    capi.ggml_backend_dev_memory(dev, ctypes.byref(free), ctypes.byref(total))
    name = _text(capi.ggml_backend_dev_name(dev))  # (its description is the relay's address)
    return RemoteDevice(endpoint, f"{name}[{endpoint}]", endpoint, int(free.value), int(total.value))


def _text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""


def worker_devices(names: Sequence[str] | None) -> list[Any]:
    """The devices a worker serves: those ``names`` names (``ggml_backend_dev_by_name``),
    else every GPU, else the CPU."""
    _backend.init_backends()
    if names:
        devices = []
        for name in names:
            dev = capi.ggml_backend_dev_by_name(name.encode())
            if not dev:
                known = [_text(capi.ggml_backend_dev_name(capi.ggml_backend_dev_get(i)))
                         for i in range(capi.ggml_backend_dev_count())]
                raise ValueError(f"no device named {name!r}; this build has {', '.join(known)}")
            devices.append(dev)
        return devices
    return local_offload_devices() or [capi.ggml_backend_dev_by_type(capi.GGML_BACKEND_DEVICE_TYPE_CPU)]


def serve(host: str, port: int, devices: Sequence[Any], cache_dir: str | None = None,
          n_threads: int | None = None) -> None:
    """Serve ``devices`` to RPC clients on ``host:port`` (blocks for the life of the process:
    run it in a thread of a process of its own, as ``llama-binding rpc-server`` does)."""
    _rpc_available()
    endpoint = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    arr = (capi.ggml_backend_dev_t * max(1, len(devices)))(*devices)
    threads = n_threads if n_threads and n_threads > 0 else (os.cpu_count() or 1)
    cache = cache_dir.encode() if cache_dir else None
    capi.ggml_backend_rpc_start_server(endpoint.encode(), cache, threads, len(devices), arr)
    # it returns only when it could not start serving
    raise RpcError(f"the RPC worker could not listen on {endpoint} (the port in use, or not an "
                   "address of this machine?)")
