"""A model-loading progress bar for terminals (``Llama(..., progress=True)``)."""

from __future__ import annotations

import sys
import time
from typing import IO, Callable, Union

__all__ = ["ProgressArg", "TerminalBar", "progress_callback"]

ProgressArg = Union[bool, Callable[[float], object], None]


class TerminalBar:
    """Draws ``label [#####     ]  45%`` on one line of ``stream``, at most every 50 ms."""

    def __init__(self, label: str, stream: IO[str] | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = -1.0
        self._drawn_at = 0.0

    def __call__(self, value: float) -> bool:
        value = min(max(value, 0.0), 1.0)
        now = time.monotonic()
        if value < 1.0 and (now - self._drawn_at < 0.05 or value == self._last):
            return True
        self._last, self._drawn_at = value, now
        filled = round(value * self.width)
        bar = "#" * filled + " " * (self.width - filled)
        end = "\n" if value >= 1.0 else ""
        self.stream.write(f"\r{self.label} [{bar}] {value * 100:3.0f}%{end}")
        self.stream.flush()
        return True


def progress_callback(progress: ProgressArg, label: str) -> Callable[[float], object] | None:
    """``True``: a bar on stderr when it is a terminal (nothing otherwise); a callable is
    used as is (returning False cancels the load); ``False``/None: no callback."""
    if progress is None or progress is False:
        return None
    if progress is True:
        isatty = getattr(sys.stderr, "isatty", None)
        return TerminalBar(label) if isatty is not None and isatty() else None
    if callable(progress):
        return progress
    raise TypeError(f"progress must be a bool or a callable, not {type(progress).__name__}")
