"""``llama-binding run MODEL [PROMPT]``: one answer, streamed to stdout.

A chat turn with the model's own template when it has one (``--raw``: a plain completion
of the prompt); the prompt from the argument or, without one, from stdin. ``--json``
prints the OpenAI-shaped result instead. Ctrl-C stops the answer (exit 130).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from .. import Llama
from ..errors import LlamaError
from ..generation.sampling import SamplingParams
from .output import Output

__all__ = ["build_parser", "run"]

#: the sampling options the command takes, named and typed as SamplingParams' fields
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                  "frequency_penalty", "seed")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding run", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="path of a GGUF file")
    p.add_argument("prompt", nargs="?", help="the prompt (default: read from stdin)")
    p.add_argument("-n", "--max-tokens", "--max_tokens", dest="max_tokens", type=int, default=256)
    p.add_argument("--system", help="a system message (chat)")
    p.add_argument("--raw", action="store_true", help="complete the prompt as it is, no chat template")
    p.add_argument("--json", action="store_true", help="print the OpenAI-shaped result, not the text")
    p.add_argument("--n-ctx", "--n_ctx", dest="n_ctx", type=int, default=4096)
    p.add_argument("--n-gpu-layers", "--n_gpu_layers", dest="n_gpu_layers", type=int, default=-1)
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    defaults = SamplingParams()
    for name in SAMPLING_FLAGS:  # typed as the library's field; left out: the library's default
        value = getattr(defaults, name)
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        p.add_argument(*flags, dest=name, type=int if value is None else type(value),
                       default=argparse.SUPPRESS, help=f"Llama's {name} (left out: Llama's default)")
    return p


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_intermixed_args(argv)  # the prompt may come after the options
    out = out or Output(quiet=args.quiet)
    prompt = args.prompt
    if prompt is None:
        if sys.stdin.isatty():
            out.error("no prompt: give one after the model, or on stdin")
            return 2
        prompt = sys.stdin.read()
    if not prompt.strip():
        out.error("the prompt is empty")
        return 2
    if not os.path.isfile(args.model):
        out.error(f"no such file: {args.model}")
        return 1
    sampling = {k: getattr(args, k) for k in SAMPLING_FLAGS if hasattr(args, k)}

    try:
        llm = Llama(args.model, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, progress=not args.quiet)
    except LlamaError as exc:
        out.error(f"could not load {args.model}: {exc}")
        return 1
    try:
        chat = not args.raw and "tokenizer.chat_template" in llm.metadata
        return _answer(llm, out, prompt, chat, args, sampling)
    except KeyboardInterrupt:
        out.line()
        out.note("stopped")
        return 130
    except LlamaError as exc:
        out.error(str(exc))
        return 1
    finally:
        llm.close()


def _answer(llm: Any, out: Output, prompt: str, chat: bool, args: argparse.Namespace,
            sampling: dict[str, Any]) -> int:
    if chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
            [{"role": "user", "content": prompt}]
        result = llm.create_chat_completion(messages, max_tokens=args.max_tokens, stream=not args.json,
                                            **sampling)
        if args.json:
            out.json(result)
            return 0
        for chunk in result:
            out.text(chunk["choices"][0]["delta"].get("content") or "")
    else:
        result = llm.create_completion(prompt, max_tokens=args.max_tokens, stream=not args.json, **sampling)
        if args.json:
            out.json(result)
            return 0
        for chunk in result:
            out.text(chunk["choices"][0]["text"])
    out.line()
    return 0
