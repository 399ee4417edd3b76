"""A persistent CPU thread pool for a context (``llama_attach_threadpool``).

Without one, ggml's CPU backend creates and joins a fresh set of threads for every graph
it computes, that is for every decoded token: with 16 threads that costs about as much as
the token's whole Python loop. llama.cpp's own tools (llama-bench, llama-cli, the server)
attach a pool; so does every :class:`~llama_binding.core.Context`. The pool's functions
live in the CPU backend, which may be a loadable module (``GGML_BACKEND_DL``), so they are
looked up through the backend registry as llama-bench does.
"""

from __future__ import annotations

import ctypes
from typing import Any

from .. import _backend, capi
from ..capi import _loader

__all__ = ["ContextPools", "ThreadPool"]

_NEW = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.POINTER(capi.ggml_threadpool_params))
_FREE = ctypes.CFUNCTYPE(None, ctypes.c_void_p)
_fns: dict[str, Any] = {}


def _cpu_functions() -> tuple[Any, Any] | None:
    if "new" not in _fns:
        _backend.init_backends()
        get = _loader.load("ggml-base").ggml_backend_reg_get_proc_address  # ggml-backend.h
        get.restype, get.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_char_p]
        dev = capi.ggml_backend_dev_by_type(capi.GGML_BACKEND_DEVICE_TYPE_CPU)
        reg = ctypes.cast(capi.ggml_backend_dev_backend_reg(dev), ctypes.c_void_p).value if dev else None
        new = get(reg, b"ggml_threadpool_new") if reg else None
        free = get(reg, b"ggml_threadpool_free") if reg else None
        _fns["new"] = _NEW(new) if new else None
        _fns["free"] = _FREE(free) if free else None
    if _fns["new"] is None or _fns["free"] is None:
        return None
    return _fns["new"], _fns["free"]


class ThreadPool:
    """``n_threads`` CPU threads that wait for work between graphs (ggml's default polling)."""

    def __init__(self, n_threads: int) -> None:
        self.ptr: int | None = None
        fns = _cpu_functions()
        if fns is None:
            return  # no CPU backend functions: ggml keeps its per-graph threads
        new, self._free = fns
        params = capi.ggml_threadpool_params_default(max(1, int(n_threads)))
        self.ptr = new(ctypes.byref(params)) or None

    def free(self) -> None:
        """Free the pool (only after the context that uses it is freed)."""
        ptr, self.ptr = self.ptr, None
        if ptr:
            self._free(ptr)


class ContextPools:
    """A context's CPU pools: one of ``n_threads`` for single-token decodes and, when
    ``n_threads_batch`` differs, one of that many for batches (``llama_attach_threadpool``
    takes both). One shared pool sized for batches cost every decode on a GPU (one thread a
    token, the CPU's share being the token's embedding row) a wake-up of all its idle
    workers: ggml's kickoff broadcasts to the whole pool whatever the graph's thread count."""

    def __init__(self) -> None:
        self._pools: list[ThreadPool] = []
        self.sizes = (0, 0)  # (decode, batch) threads of the pools attached

    def attach(self, ctx: Any, n_threads: int, n_threads_batch: int) -> None:
        """Attach pools for these counts to the context ``ctx`` (a ``llama_context *``) unless
        the attached ones hold as many threads; the pools they replace are freed."""
        if self._pools and n_threads <= self.sizes[0] and n_threads_batch <= self.sizes[1]:
            return
        one = ThreadPool(n_threads)
        many = one if n_threads_batch == n_threads else ThreadPool(n_threads_batch)
        made = [one] if many is one else [one, many]
        if one.ptr is None or many.ptr is None:  # no CPU backend functions: ggml's per-graph threads
            for p in made:
                p.free()
            return
        capi.llama_attach_threadpool(ctx, ctypes.cast(one.ptr, capi.ggml_threadpool_t),
                                     ctypes.cast(many.ptr, capi.ggml_threadpool_t))
        old, self._pools, self.sizes = self._pools, made, (n_threads, n_threads_batch)
        for p in old:  # (llama.cpp uses the new ones from its next graph on)
            p.free()

    def free(self) -> None:
        """Free the pools (only after the context that uses them is freed)."""
        pools, self._pools = self._pools, []
        for p in pools:
            p.free()
