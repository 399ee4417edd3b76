"""``llama-binding quantize IN OUT TYPE``: llama-quantize through ``llama_binding.quantize``.

On a terminal a bar on stderr shows how far it has got (estimated from the size written so
far; ``--quiet`` leaves it out, and so does a stderr that is not a terminal)."""

from __future__ import annotations

import argparse
import os

from .._progress import TerminalBar
from ..errors import LlamaError
from ..quantize import file_types, quantize
from .output import Output

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding quantize", description=__doc__.split("\n\n")[0])
    p.add_argument("input", help="the GGUF model to quantize (F32, F16 or BF16 weights)")
    p.add_argument("output", help="the GGUF file to write")
    p.add_argument("type", help=f"the file type: COPY, {', '.join(sorted(file_types()))}")
    p.add_argument("--threads", type=int, default=0, help="threads (0: every core)")
    p.add_argument("--allow-requantize", action="store_true", help="quantize already quantized tensors")
    p.add_argument("--leave-output-tensor", action="store_true", help="keep output.weight as it is")
    p.add_argument("--pure", action="store_true", help="every tensor to the type (no k-quant mixtures)")
    p.add_argument("--keep-split", action="store_true", help="as many shards as the input")
    p.add_argument("--output-tensor-type", help="ggml type of output.weight (q8_0, f16, ...)")
    p.add_argument("--token-embedding-type", help="ggml type of token_embd.weight")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no messages on stderr")
    return p


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output(quiet=args.quiet)
    try:
        quantize(args.input, args.output, args.type, threads=args.threads,
                 allow_requantize=args.allow_requantize, leave_output_tensor=args.leave_output_tensor,
                 pure=args.pure, keep_split=args.keep_split, output_tensor_type=args.output_tensor_type,
                 token_embedding_type=args.token_embedding_type, progress=_bar(out, args.input) or False)
    except ValueError as exc:
        out.error(str(exc))
        return 2
    except LlamaError as exc:
        out.error(str(exc))
        return 1
    size = os.path.getsize(args.output) if os.path.isfile(args.output) else 0
    out.note(f"wrote {args.output} ({size / 2**20:.1f} MiB, {args.type})")
    return 0


def _bar(out: Output, src: str) -> TerminalBar | None:
    """A progress bar on ``out``'s stderr, when that is a terminal and not ``--quiet``."""
    isatty = getattr(out.err, "isatty", None)
    if out.quiet or isatty is None or not isatty():
        return None
    return TerminalBar(f"quantizing {os.path.basename(src)}", stream=out.err)
