"""``llama-binding quantize IN OUT TYPE``: llama-quantize through ``llama_binding.quantize``."""

from __future__ import annotations

import argparse
import os

from ..errors import LlamaError
from ..quantize import file_types, quantize
from .output import Output

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding quantize", description=__doc__)
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
    return p


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output()
    try:
        quantize(args.input, args.output, args.type, threads=args.threads,
                 allow_requantize=args.allow_requantize, leave_output_tensor=args.leave_output_tensor,
                 pure=args.pure, keep_split=args.keep_split, output_tensor_type=args.output_tensor_type,
                 token_embedding_type=args.token_embedding_type)
    except ValueError as exc:
        out.error(str(exc))
        return 2
    except LlamaError as exc:
        out.error(str(exc))
        return 1
    size = os.path.getsize(args.output) if os.path.isfile(args.output) else 0
    out.note(f"wrote {args.output} ({size / 2**20:.1f} MiB, {args.type})")
    return 0
