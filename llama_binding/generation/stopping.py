"""Stop strings, matched across token boundaries over a sliding window.

:class:`StopMatcher` sees the text as it streams. It emits everything that can no longer
be the start of a stop string and holds back only the longest tail that is a prefix of
one, so the work per token is bounded by the length of the stop strings, not of the
completion.
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["StopMatcher"]


class StopMatcher:
    """Find the first occurrence of any stop string in streamed text."""

    __slots__ = ("_pending", "stopped", "stops")

    def __init__(self, stops: Iterable[str] | str | None) -> None:
        if stops is None:
            stops = ()
        elif isinstance(stops, str):
            stops = (stops,)
        elif not isinstance(stops, Iterable):
            raise TypeError(f"stop must be a str, a list of str or None, not {type(stops).__name__}")
        self.stops: tuple[str, ...] = tuple(s for s in stops if s)
        for s in self.stops:
            if not isinstance(s, str):
                raise TypeError(f"stop strings must be str, got {type(s).__name__}")
        self._pending = ""
        self.stopped: str | None = None

    def feed(self, text: str) -> tuple[str, bool]:
        """Add ``text``; return ``(text safe to emit, whether a stop string was hit)``.

        After a hit the text before the stop string is returned and the rest is dropped.
        """
        if not self.stops:
            return text, False
        buf = self._pending + text
        first = -1
        for stop in self.stops:
            i = buf.find(stop)
            if i != -1 and (first == -1 or i < first):
                first, self.stopped = i, stop
        if first != -1:
            self._pending = ""
            return buf[:first], True
        hold = 0
        for stop in self.stops:
            for k in range(min(len(stop) - 1, len(buf)), hold, -1):
                if buf.endswith(stop[:k]):
                    hold = k
                    break
        cut = len(buf) - hold
        self._pending = buf[cut:]
        return buf[:cut], False

    def flush(self) -> str:
        """The held-back tail, at the end of generation."""
        tail, self._pending = self._pending, ""
        return tail

    @property
    def held(self) -> int:
        """Characters currently held back."""
        return len(self._pending)
