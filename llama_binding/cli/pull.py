"""``llama-binding pull user/repo[:quant]``: download a GGUF from the Hugging Face Hub into
its cache (or ``--local-dir``) and print its local path on stdout, so that
``llama-binding run "$(llama-binding pull user/repo)" "Hi"`` works.

The file is picked as llama.cpp's ``-hf`` picks it: the GGUF whose name holds the quant
tag (default Q4_K_M, then Q8_0, then the first one), projector (mmproj) files left out; a
split model is fetched whole and named by its first part. ``--offline`` (or
``HF_HUB_OFFLINE=1``) reads the cache only.
"""

from __future__ import annotations

import argparse
import logging

from ..errors import LlamaError
from ..hub import resolve_ref
from .output import Output

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding pull", description=__doc__.split("\n\n")[0])
    p.add_argument("ref", metavar="REF", help="user/repo or user/repo:QUANT (for example :Q8_0)")
    p.add_argument("--offline", action="store_true", help="the local cache only (as HF_HUB_OFFLINE=1)")
    p.add_argument("--local-dir", "--local_dir", dest="local_dir",
                   help="download into this folder instead of the Hugging Face cache")
    p.add_argument("--quiet", action="store_true", help="no progress bar, no messages on stderr")
    return p


def run(argv: list[str], out: Output | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = out or Output(quiet=args.quiet)
    if args.quiet:  # huggingface_hub's own messages (retries, fallbacks to the cache)
        logging.getLogger("huggingface_hub").setLevel(logging.ERROR)
    try:
        path = resolve_ref(args.ref, offline=args.offline, local_dir=args.local_dir, progress=not args.quiet)
    except (LlamaError, ValueError) as exc:
        out.error(str(exc))
        return 1
    except KeyboardInterrupt:  # a download stopped: huggingface_hub resumes it next time
        out.note("stopped")
        return 130
    out.line(str(path))
    return 0
