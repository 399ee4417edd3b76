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

__all__ = ["ThreadPool"]

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
