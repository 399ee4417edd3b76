"""Runtime support of the generated capi modules (hand-written, small, no C names).

How a generated function binds
------------------------------
Each C function is generated as a typed Python stub::

    @_lib.signature(ctypes.c_int32, ctypes.POINTER(llama_vocab))
    def llama_vocab_n_tokens(vocab: Ptr[llama_vocab], /) -> int:
        return _lib.llama_vocab_n_tokens(vocab)

``signature`` only records the ctypes types; nothing is loaded at import. The first call
reaches :meth:`Library.__getattr__`, which loads the library through ``_loader``, looks the
symbol up, sets ``argtypes``/``restype`` and caches the ctypes function object. It then
puts that object in place of the stub in the generated module and in ``llama_binding.capi``,
so every later ``capi.llama_vocab_n_tokens(...)`` is the bare ctypes call. Code that took
a reference to the stub before the first call keeps calling the stub, which costs one more
Python call. Deprecated functions keep their stub for good, so that every call warns.

The functions named in :data:`KEEP_GIL` bind through a ``ctypes.PyDLL`` handle: they keep
Python's GIL during the call. Every other call releases it, and taking it back waits while
another thread runs Python, up to the switch interval (0.5 ms in the server). Those are
getters and the sampler chain's constructors that return in microseconds, called per request
on the event loop's thread (about twenty a sampled request) and per finished request on the
engine's; with the engine and the loop both busy, each release was a chance to wait. None of
them blocks or waits for another thread.

A symbol that the loaded library lacks raises
:class:`~llama_binding.errors.SymbolNotFoundError` when the function is called, never at
import.
"""

from __future__ import annotations

import ctypes
import sys
import threading
import warnings
from _ctypes import FUNCFLAG_CDECL, CFuncPtr
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

from ..errors import LibraryLoadError, SymbolNotFoundError
from . import _loader

if TYPE_CHECKING:
    from ctypes import Array, _CArgObject, _CData, _Pointer
    from typing import Union

    from typing_extensions import Self, TypeAlias

    _CT = TypeVar("_CT", bound=_CData)

    #: What a ``T *`` parameter accepts: a pointer, an array, ``byref(x)``, a ``T`` itself
    #: (passed by reference) or None (NULL).
    Ptr: TypeAlias = Union[_Pointer[_CT], Array[_CT], _CArgObject, _CT, None]
    #: What a ``void *`` parameter accepts.
    VoidP: TypeAlias = Union[int, bytes, _CData, _CArgObject, None]
    #: What a ``char *`` / ``const char *`` parameter accepts.
    CharP: TypeAlias = Union[bytes, ctypes.c_char_p, Array[ctypes.c_char], _Pointer[ctypes.c_char],
                             _CArgObject, None]

    class PointerField(Generic[_CT]):
        """A ``T *`` struct field, for type checkers: it reads as a pointer and takes a pointer,
        an array of ``T`` or None (NULL), as ctypes allows."""

        def __get__(self, obj: object, owner: object) -> _Pointer[_CT]: ...
        def __set__(self, obj: object, value: _Pointer[_CT] | Array[_CT] | None) -> None: ...

__all__ = ["FUNCFLAG_CDECL", "KEEP_GIL", "CCallback", "Library", "warn_deprecated"]

#: C functions that keep the GIL while they run (module docstring): microseconds each, no
#: locks, no waiting; what can take longer (tokenizing, a grammar's or DRY's set-up, decoding,
#: loading, state I/O) releases it as every other function does.
KEEP_GIL = frozenset({
    "llama_model_has_decoder", "llama_model_has_encoder", "llama_model_is_recurrent",
    "llama_model_is_hybrid", "llama_get_causal_attn", "llama_n_ctx", "llama_n_ctx_seq",
    "llama_n_batch", "llama_n_ubatch", "llama_n_seq_max", "llama_vocab_n_tokens", "llama_vocab_is_eog",
    "llama_vocab_is_control", "llama_sampler_chain_default_params", "llama_sampler_chain_init",
    "llama_sampler_chain_add", "llama_sampler_chain_n", "llama_sampler_chain_get", "llama_sampler_name",
    "llama_sampler_init_greedy", "llama_sampler_init_dist", "llama_sampler_init_top_k",
    "llama_sampler_init_top_p", "llama_sampler_init_min_p", "llama_sampler_init_typical",
    "llama_sampler_init_temp", "llama_sampler_init_temp_ext", "llama_sampler_init_xtc",
    "llama_sampler_init_top_n_sigma", "llama_sampler_init_mirostat", "llama_sampler_init_mirostat_v2",
    "llama_sampler_init_penalties", "llama_sampler_init_logit_bias", "llama_sampler_free",
    "llama_sampler_get_seed", "llama_get_memory", "llama_memory_seq_pos_min", "llama_memory_seq_pos_max",
})

_F = TypeVar("_F", bound=Callable[..., Any])
_CAPI_PACKAGE = __name__.rpartition(".")[0]


class CCallback(CFuncPtr):
    """Base of the generated C function-pointer types (cdecl, like ``ctypes.CFUNCTYPE``).

    Unlike a ``CFUNCTYPE`` type, a parameter of one of these types also accepts None (NULL).
    Build one around a Python callable with ``the_type(func)`` and keep that object alive for
    as long as C code may call it.
    """

    _flags_ = FUNCFLAG_CDECL

    @classmethod
    def from_param(cls, obj: object) -> Self | _CArgObject:
        if obj is None:
            return cls()
        return type(cls).from_param(cls, obj)  # type: ignore[attr-defined, no-any-return]


def warn_deprecated(name: str, hint: str) -> None:
    """Warn that the C function ``name`` is deprecated; ``hint`` is the header's advice."""
    warnings.warn(f"{name} is deprecated: {hint}", DeprecationWarning, stacklevel=3)


class Library:
    """The lazily bound C functions of one generated module.

    ``libraries`` are the names given to :func:`_loader.load`, searched in order for each
    symbol (ggml functions live in libggml-base, libggml or libggml-cpu).
    """

    def __init__(self, module: str, libraries: tuple[str, ...]) -> None:
        self._module = module
        self._libraries = libraries
        self._signatures: dict[str, tuple[Any, tuple[Any, ...]]] = {}
        self._stubs: dict[str, Callable[..., Any]] = {}
        self._deprecated: set[str] = set()
        # re-entrant: binding the first function loads the libraries, whose after_load hooks
        # (the log callback) bind other functions of this module
        self._lock = threading.RLock()

    def signature(self, restype: Any, *argtypes: Any, deprecated: str | None = None) -> Callable[[_F], _F]:
        """Record the ctypes types of the C function that the decorated stub stands for."""

        def register(stub: _F) -> _F:
            name = stub.__name__
            self._signatures[name] = (restype, argtypes)
            self._stubs[name] = stub
            if deprecated is not None:
                self._deprecated.add(name)
            return stub

        return register

    def __getattr__(self, name: str) -> Any:
        signatures = self.__dict__.get("_signatures")
        if signatures is None or name not in signatures:
            raise AttributeError(name)
        with self._lock:
            fn = self.__dict__.get(name)
            if fn is None:
                fn = self._bind(name)
                self.__dict__[name] = fn
                if name not in self._deprecated:
                    self._install(name, fn)
        return fn

    def _bind(self, name: str) -> Any:
        restype, argtypes = self._signatures[name]
        load_error: LibraryLoadError | None = None
        loaded = 0
        for libname in self._libraries:
            try:
                lib = _loader.load_keeping_gil(libname) if name in KEEP_GIL else _loader.load(libname)
            except LibraryLoadError as exc:
                load_error = load_error or exc
                continue
            loaded += 1
            try:
                fn = lib[name]
            except AttributeError:
                continue
            fn.restype = restype
            fn.argtypes = argtypes
            fn.__name__ = name
            fn.__doc__ = self._stubs[name].__doc__
            return fn
        if loaded == 0 and load_error is not None:
            raise load_error
        raise SymbolNotFoundError(name, " / ".join(_loader.library_filename(n) for n in self._libraries))

    def _install(self, name: str, fn: Any) -> None:
        stub = self._stubs[name]
        for modname in (self._module, _CAPI_PACKAGE):
            module = sys.modules.get(modname)
            if module is not None and module.__dict__.get(name) is stub:
                setattr(module, name, fn)

    def bound(self, name: str) -> bool:
        """Whether ``name`` was resolved already (for tests and diagnostics)."""
        return name in self.__dict__
