"""The ``llama-binding`` command: one module per subcommand (``serve`` so far).

Exit codes a shell can use: 0 done, 1 failed, 2 bad usage (argparse's), no traceback for
a user's mistake.
"""

from __future__ import annotations

import sys

__all__ = ["main"]

USAGE = "usage: llama-binding serve --model PATH [options]   (llama-binding serve --help)\n"


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        sys.stdout.write(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "serve":
        from .serve import run

        return run(rest)
    sys.stderr.write(f"llama-binding: unknown command {command!r}\n{USAGE}")
    return 2
