"""Everything the command line prints goes through :class:`Output`: results to stdout,
messages to stderr (``--quiet`` silences the messages, never the results or errors)."""

from __future__ import annotations

import json
import sys
from typing import Any, Optional, TextIO

__all__ = ["Output"]


class Output:
    """The CLI's one writer (see the module docstring)."""

    def __init__(self, out: Optional[TextIO] = None, err: Optional[TextIO] = None,
                 quiet: bool = False) -> None:
        self.out = out if out is not None else sys.stdout
        self.err = err if err is not None else sys.stderr
        self.quiet = quiet

    def text(self, s: str) -> None:
        """Part of a result, as it comes (a streamed answer)."""
        self.out.write(s)
        self.out.flush()

    def line(self, s: str = "") -> None:
        self.out.write(s + "\n")
        self.out.flush()

    def json(self, value: Any) -> None:
        self.line(json.dumps(value, indent=2, ensure_ascii=False, default=str))

    def fields(self, rows: list[tuple[str, Any]]) -> None:
        """``key  value`` lines, the keys aligned."""
        width = max((len(k) for k, _ in rows), default=0)
        for key, value in rows:
            self.line(f"{key:<{width}}  {value}")

    def note(self, s: str) -> None:
        """A message for the person at the terminal (not part of the result)."""
        if not self.quiet:
            self.err.write(s + "\n")
            self.err.flush()

    def error(self, s: str) -> None:
        self.err.write(f"llama-binding: error: {s}\n")
        self.err.flush()
