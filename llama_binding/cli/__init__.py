"""The ``llama-binding`` command (also ``python -m llama_binding``): one module per
subcommand (``run``, ``chat``, ``info``, ``quantize``, ``serve``, ``bench``, ``pull``,
``rpc-server``), all
printing through ``output.Output``; without a model, ``run``, ``chat`` and ``serve`` use the
default model (:mod:`llama_binding.default_model`).

Exit codes a shell can use: 0 done, 1 failed, 2 bad usage (argparse's), no traceback for
a user's mistake.
"""

from __future__ import annotations

import importlib
import sys

from .output import Output

__all__ = ["main"]

USAGE = """usage: llama-binding COMMAND ...

  run [MODEL] [PROMPT] one answer, streamed (a chat turn with the model's template;
                       no MODEL: a small default model, fetched once)
  chat [MODEL]         an interactive chat in the terminal (the model's template)
  info MODEL           what a GGUF file holds and what loading it would take
  quantize IN OUT TYPE llama-quantize (Q4_K_M, Q8_0, ...)
  serve [--model PATH] the OpenAI-compatible server (the server extra)
  bench MODEL          prefill and decode tokens/s, beside llama-bench
  pull USER/REPO[:Q]   download a GGUF from the Hugging Face Hub, print its path
  rpc-server           serve this machine's devices to llama.cpp RPC clients (--rpc-servers)

llama-binding COMMAND --help tells more.
"""
COMMANDS = ("run", "chat", "info", "quantize", "serve", "bench", "pull", "rpc-server")


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        Output().text(USAGE)
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command not in COMMANDS:
        Output().error(f"unknown command {command!r}\n{USAGE}")
        return 2
    module = importlib.import_module(f".{command.replace('-', '_')}", __name__)
    return int(module.run(rest))
