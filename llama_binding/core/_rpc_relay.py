"""Relays between ggml-rpc and its workers (``native/rpc_relay.c``), so that a worker lost
while a model uses it is an :class:`~llama_binding.errors.RpcError`, not the end of the
process.

ggml-rpc aborts the process when a worker's connection fails. ggml-rpc therefore connects
to a relay of ours on 127.0.0.1, one per worker, that forwards the traffic; when the worker
closes, resets or does not answer within ``LLAMA_BINDING_RPC_TIMEOUT`` seconds (default
300), the relay answers for it (zeros, failed allocations) and counts a failure. A model
made with the worker's devices holds a :class:`Link`; its contexts call :meth:`Link.check`
after each decode, which raises once the worker was lost. Such a model gives garbage and
cannot be used again: close it. A worker that answers again can serve a new model once every
model of the lost connection is closed (ggml-rpc then connects anew).
"""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Sequence
from typing import Any

from ..capi import _loader
from ..errors import RpcError

__all__ = ["Link", "Relay", "link_for", "relay_for", "remember_devices"]

DEFAULT_TIMEOUT_S = 300.0
_lock = threading.Lock()
_relays: dict[str, Relay] = {}  # worker endpoint -> its relay, for the life of the process
_by_device: dict[int, Relay] = {}  # address of a remote ggml_backend_dev_t -> its worker's relay
_fns: dict[str, Any] = {}


def _lib() -> dict[str, Any]:
    if not _fns:
        lib = _loader.load("llama_binding_native")
        start = lib.llama_binding_relay_start
        start.restype = ctypes.c_void_p
        start.argtypes = [ctypes.c_char_p, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int)]
        failures = lib.llama_binding_relay_failures
        failures.restype, failures.argtypes = ctypes.c_void_p, [ctypes.c_void_p]
        error = lib.llama_binding_relay_error
        error.restype, error.argtypes = None, [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        _fns.update(start=start, failures=failures, error=error)
    return _fns


def timeout_s() -> float:
    """How long a worker may take to answer (``LLAMA_BINDING_RPC_TIMEOUT``; 0: no limit)."""
    raw = os.environ.get("LLAMA_BINDING_RPC_TIMEOUT", "")
    try:
        value = float(raw) if raw.strip() else DEFAULT_TIMEOUT_S
    except ValueError:
        raise RpcError(f"LLAMA_BINDING_RPC_TIMEOUT={raw!r} is not a number of seconds") from None
    if value == float("inf"):
        return 0.0
    if value < 0 or value != value:
        raise RpcError(f"LLAMA_BINDING_RPC_TIMEOUT={raw!r} must be 0 (no limit) or more seconds")
    return value


class Relay:
    """The relay of one worker: ggml-rpc reaches it at :attr:`address`."""

    def __init__(self, endpoint: str) -> None:
        host, _, port = endpoint.rpartition(":")
        fns, out = _lib(), ctypes.c_int(0)
        timeout_ms = min(int(timeout_s() * 1000), 2**31 - 1)
        handle = fns["start"](host.strip("[]").encode(), int(port), timeout_ms, ctypes.byref(out))
        if not handle:
            raise RpcError(f"could not open a loopback port to relay the RPC worker {endpoint}")
        self.endpoint = endpoint
        self.address = f"127.0.0.1:{out.value}"
        self._handle = handle
        self._failures = ctypes.c_int.from_address(fns["failures"](handle))
        #: the failure count when the current connection's first model was loaded
        self.base = self.failures

    @property
    def failures(self) -> int:
        """Connections through this relay whose worker was lost, so far."""
        return int(self._failures.value)

    def error(self) -> str:
        """Why the last connection's worker was lost."""
        buf = ctypes.create_string_buffer(512)
        _lib()["error"](self._handle, buf, len(buf))
        return buf.value.decode("utf-8", "replace")

    def lost_error(self) -> RpcError:
        return RpcError(f"the RPC worker {self.endpoint} was lost ({self.error()}): a model that used it "
                        "gives no more results; close it (local models are not affected)")


def relay_for(endpoint: str) -> Relay:
    """The relay of ``endpoint`` (started on first use)."""
    with _lock:
        relay = _relays.get(endpoint)
        if relay is None:
            relay = _relays[endpoint] = Relay(endpoint)
        return relay


def remember_devices(relay: Relay, devices: Sequence[Any]) -> None:
    """Note that ``devices`` (``ggml_backend_dev_t``) are the worker's behind ``relay``."""
    with _lock:
        for dev in devices:
            _by_device[_address(dev)] = relay


def _address(dev: Any) -> int:
    return int(ctypes.cast(dev, ctypes.c_void_p).value or 0)


class Link:
    """The workers a model uses, and their relays' failure counts when it was loaded."""

    __slots__ = ("_watch", "endpoints")

    def __init__(self, relays: Sequence[Relay]) -> None:
        self.endpoints = [r.endpoint for r in relays]
        self._watch = [(r._failures, r.base, r) for r in relays]

    def check(self) -> None:
        """:class:`RpcError` once a worker of the model was lost."""
        for failures, base, relay in self._watch:
            if failures.value != base:
                raise relay.lost_error()

    @property
    def lost(self) -> bool:
        """Whether a worker of the model was lost."""
        return any(failures.value != base for failures, base, _ in self._watch)


def link_for(devices: Sequence[Any] | None) -> Link | None:
    """The :class:`Link` of a model to be loaded on ``devices`` (None: no remote device)."""
    if not devices:
        return None
    with _lock:
        relays = list(dict.fromkeys(r for d in devices if (r := _by_device.get(_address(d))) is not None))
    return Link(relays) if relays else None
