"""``llama-binding serve``: the OpenAI-compatible server (``llama_binding.server``)."""

from __future__ import annotations

import sys

__all__ = ["run"]


def run(argv: list[str]) -> int:
    try:
        from ..server import main
    except ImportError as exc:  # the server extra is not installed
        sys.stderr.write(f"llama-binding serve needs the server extra: pip install 'llama-binding[server]' "
                         f"({exc})\n")
        return 1
    return main(argv, prog="llama-binding serve")
