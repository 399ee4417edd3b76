"""llama.cpp's native log -> ``logging.getLogger("llama_binding")``.

llama.cpp prints to stderr unless a log callback is set. :func:`install` sets one (once per
process, as soon as the native libraries are loaded, so raw :mod:`~llama_binding.capi` use is
covered too) that turns each native line into a log record of the matching level, under the
logger ``llama_binding.native``. The package logger has a ``NullHandler``, so nothing reaches
stderr until the application configures logging, or a ``Llama(verbose=True)`` attaches a
stderr handler for INFO and above (:func:`set_verbose`).

Ctrl-C while C code calls one of our Python callbacks raises KeyboardInterrupt inside the
callback, where ctypes can only print it ("Exception ignored on calling ctypes callback
function") and drop it. Our callbacks (this one, a model's progress callback) take it in
instead: :func:`interrupts` counts them, and the Python code around the native call raises
KeyboardInterrupt once the call is back (a model load, a context creation, a decode).
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import weakref
from collections import deque
from typing import Any, Callable, TypeVar

from . import capi
from .capi import _loader

__all__ = ["count_interrupt", "error_mark", "errors_since", "install", "interrupts", "logger",
           "native_logger", "quiet_callback", "set_verbose", "sync_level"]

_F = TypeVar("_F", bound=Callable[..., Any])

logger = logging.getLogger("llama_binding")
logger.addHandler(logging.NullHandler())
native_logger = logging.getLogger("llama_binding.native")

# ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT (continues the previous record)
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5

_lock = threading.Lock()
_installed: list[Any] = []  # keeps the ctypes callback alive for the life of the process
_min_level: list[Any] = []  # the C filter's level setter, once installed
_partial: dict[str, Any] = {"level": logging.INFO, "text": ""}
_verbose_handler: logging.Handler | None = None
# the last native warnings and errors, numbered, so that a failed call can say why
_recent: deque[tuple[int, int, str]] = deque(maxlen=16)  # (number, logging level, text)
_counter = [0]
_interrupts = [0]  # KeyboardInterrupts taken in by our ctypes callbacks
_quiet: weakref.WeakSet[Any] = weakref.WeakSet()  # the Python functions of those callbacks
_previous_hook: list[Callable[[Any], object]] = []  # sys.unraisablehook before ours


def _emit(level: int, text: str) -> None:
    if level != _CONT:
        if _partial["text"]:  # a new record ends an unfinished line
            native_logger.log(int(_partial["level"]), "%s", _partial["text"])
            _partial["text"] = ""
        _partial["level"] = _LEVELS.get(level, logging.INFO)
    *lines, rest = (str(_partial["text"]) + text).split("\n")
    _partial["text"] = rest
    pylevel = int(_partial["level"])
    for line in lines:
        if not line:
            continue
        if pylevel >= logging.WARNING:
            _counter[0] += 1
            _recent.append((_counter[0], pylevel, line.strip()))
        if native_logger.isEnabledFor(pylevel):
            native_logger.log(pylevel, "%s", line)


def error_mark() -> int:
    """A mark to pass to :func:`errors_since` after a native call."""
    return _counter[0]


def errors_since(mark: int) -> str:
    """The native errors logged since ``mark``, then its warnings, joined (may be empty):
    the cause leads, ahead of warnings that are often unrelated to it."""
    lines = [(level, text) for n, level, text in _recent if n > mark]
    errors = [text for level, text in lines if level >= logging.ERROR]
    warnings = [text for level, text in lines if level < logging.ERROR]
    return "; ".join(errors + warnings)


def interrupts() -> int:
    """How many KeyboardInterrupts our ctypes callbacks have taken in so far: compare the
    counts before and after a native call, and raise KeyboardInterrupt if it grew."""
    return _interrupts[0]


def _unraisable(unraisable: Any) -> None:
    """``sys.unraisablehook``: a KeyboardInterrupt raised as one of our callbacks began
    (before its ``try``) is counted, not printed; anything else goes to the previous hook."""
    try:
        ours = unraisable.object in _quiet
    except TypeError:  # not hashable: not one of ours
        ours = False
    if ours:
        if unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt):
            _interrupts[0] += 1
        return
    (_previous_hook[0] if _previous_hook else sys.__unraisablehook__)(unraisable)


def quiet_callback(fn: _F) -> _F:
    """``fn``, a Python function given to C as a callback, whose KeyboardInterrupt is counted
    by :func:`interrupts` instead of printed by ctypes; ``fn`` itself catches what its body
    raises (counting a KeyboardInterrupt with :func:`count_interrupt`)."""
    _quiet.add(fn)
    if sys.unraisablehook is not _unraisable:  # (again, if someone replaced it since)
        _previous_hook[:] = [sys.unraisablehook]
        sys.unraisablehook = _unraisable
    return fn


def count_interrupt(exc: BaseException) -> None:
    """Count ``exc`` if it is a KeyboardInterrupt caught inside a callback (see :func:`interrupts`)."""
    if isinstance(exc, KeyboardInterrupt):
        _interrupts[0] += 1


def _callback(level: int, text: bytes | None, _user_data: Any) -> None:
    try:
        _emit(int(level), (text or b"").decode("utf-8", "replace"))
    except BaseException as exc:  # a callback must never raise into C
        count_interrupt(exc)


def install(again: bool = False) -> None:
    """Route llama.cpp's and ggml's logs into ``logging`` (idempotent; ``again=True`` points
    llama.cpp at the callback once more, after raw ``capi.llama_log_set`` calls replaced it).

    The callback that llama.cpp calls is our C filter (``native/log_filter.c``): lines
    below the lowest level ``llama_binding.native`` accepts (see :func:`sync_level`) are
    dropped there, since some arrive on every decode and a Python callback inside
    ``llama_decode`` delays the GPU's work. Warnings and errors always reach Python.
    """
    if _installed:
        if again:
            with _lock:
                capi.llama_log_set(_installed[-1], None)  # the C filter (or the callback without it)
        return
    _loader.lib_dir()  # loads the libraries first: that runs this (the after_load hook) once
    with _lock:
        if _installed:
            return
        cb = capi.ggml_log_callback(quiet_callback(_callback))
        try:
            native = _loader.load("llama_binding_native")
            forward = native.llama_binding_log_forward
            forward.restype, forward.argtypes = None, [capi.ggml_log_callback]
            min_level = native.llama_binding_log_min_level
            min_level.restype, min_level.argtypes = None, [ctypes.c_int]
            front = ctypes.cast(native.llama_binding_log_filter, capi.ggml_log_callback)
        except (OSError, AttributeError):  # no helper library: every line goes to Python
            capi.llama_log_set(cb, None)
            _installed.append(cb)
            return
        forward(cb)
        capi.llama_log_set(front, None)
        _installed.extend([cb, front])
        _min_level.append(min_level)
    sync_level()


def sync_level() -> None:
    """Pass the lowest level that ``llama_binding.native`` accepts now to the C filter
    (done at install, by ``Llama()``, each model load and :func:`set_verbose`; call it
    again after enabling DEBUG logging to see llama.cpp's debug lines)."""
    if _min_level:
        level = (1 if native_logger.isEnabledFor(logging.DEBUG)
                 else 2 if native_logger.isEnabledFor(logging.INFO) else 3)
        _min_level[0](level)


def _debug_asked(record: logging.LogRecord) -> bool:
    """The verbose handler's filter: INFO and above, DEBUG only once the application set
    the level of ``llama_binding`` or ``llama_binding.native`` to DEBUG itself."""
    if record.levelno >= logging.INFO:
        return True
    return any(logging.NOTSET < lg.level <= logging.DEBUG for lg in (logger, native_logger))


def set_verbose(verbose: bool) -> None:
    """Show llama.cpp's logs on stderr (``True``) or keep them quiet (``False``).

    Verbose mode attaches one stderr handler to the package logger for INFO and above (what
    llama.cpp's own tools print; its DEBUG lines, thousands per model load, appear once the
    application sets the ``llama_binding`` logger's level to DEBUG); quiet mode removes it
    again. Logging configured by the application is left alone.
    """
    global _verbose_handler
    with _lock:
        if verbose and _verbose_handler is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.addFilter(_debug_asked)
            logger.addHandler(handler)
            if logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
            _verbose_handler = handler
        elif not verbose and _verbose_handler is not None:
            logger.removeHandler(_verbose_handler)
            _verbose_handler = None
    sync_level()


_loader.after_load(install)  # before raw capi use prints anything (llama.cpp's default is stderr)
