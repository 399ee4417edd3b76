"""llama.cpp's native log -> ``logging.getLogger("llama_binding")``.

llama.cpp prints to stderr unless a log callback is set. :func:`install` sets one (once per
process) that turns each native line into a log record of the matching level, under the
logger ``llama_binding.native``. The package logger has a ``NullHandler``, so nothing reaches
stderr until the application configures logging, or a ``Llama(verbose=True)`` attaches a
stderr handler (:func:`set_verbose`).
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from typing import Any

from . import capi

__all__ = ["error_mark", "errors_since", "install", "logger", "native_logger", "set_verbose"]

logger = logging.getLogger("llama_binding")
logger.addHandler(logging.NullHandler())
native_logger = logging.getLogger("llama_binding.native")

# ggml_log_level: NONE, DEBUG, INFO, WARN, ERROR, CONT (continues the previous record)
_LEVELS = {0: logging.INFO, 1: logging.DEBUG, 2: logging.INFO, 3: logging.WARNING, 4: logging.ERROR}
_CONT = 5

_lock = threading.Lock()
_installed: list[Any] = []  # keeps the ctypes callback alive for the life of the process
_partial: dict[str, Any] = {"level": logging.INFO, "text": ""}
_verbose_handler: logging.Handler | None = None
# the last native warnings and errors, numbered, so that a failed call can say why
_recent: deque[tuple[int, str]] = deque(maxlen=16)
_counter = [0]


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
            _recent.append((_counter[0], line.strip()))
        if native_logger.isEnabledFor(pylevel):
            native_logger.log(pylevel, "%s", line)


def error_mark() -> int:
    """A mark to pass to :func:`errors_since` after a native call."""
    return _counter[0]


def errors_since(mark: int) -> str:
    """The native warnings and errors logged since ``mark``, joined (may be empty)."""
    return "; ".join(text for n, text in _recent if n > mark)


def _callback(level: int, text: bytes | None, _user_data: Any) -> None:
    try:
        _emit(int(level), (text or b"").decode("utf-8", "replace"))
    except Exception:  # a callback must never raise into C
        pass


def install() -> None:
    """Route llama.cpp's and ggml's logs into ``logging`` (idempotent)."""
    with _lock:
        if _installed:
            return
        cb = capi.ggml_log_callback(_callback)
        capi.llama_log_set(cb, None)
        _installed.append(cb)


def set_verbose(verbose: bool) -> None:
    """Show llama.cpp's logs on stderr (``True``) or keep them quiet (``False``).

    Verbose mode attaches one stderr handler to the package logger at DEBUG level; quiet
    mode removes it again. Logging configured by the application is left alone.
    """
    global _verbose_handler
    with _lock:
        if verbose and _verbose_handler is None:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(logging.Formatter("%(message)s"))
            logger.addHandler(handler)
            if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
                logger.setLevel(logging.DEBUG)
            _verbose_handler = handler
        elif not verbose and _verbose_handler is not None:
            logger.removeHandler(_verbose_handler)
            _verbose_handler = None
