"""``python -m tools.bindgen [--check] [--stats]``: regenerate llama_binding/capi/{ggml,gguf,llama,mtmd}.py.

``--check`` writes nothing and exits 1 (printing a diff) when a committed file differs from
what the headers give; ``--stats`` prints how many functions, records and enumerators were
generated against how many the headers declare.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from pathlib import Path

from . import config
from .generate import generate


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.bindgen", description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="exit 1 when the committed files are stale")
    ap.add_argument("--stats", action="store_true", help="print generated vs declared counts")
    ap.add_argument("--llama-cpp", type=Path, default=config.LLAMA_CPP, help="the llama.cpp tree")
    ap.add_argument("--out", type=Path, default=config.OUTPUT_DIR, help="where the modules go")
    args = ap.parse_args(argv)

    files = generate(args.llama_cpp)
    if args.stats:
        from .stats import report

        print(report(args.llama_cpp))
    stale = []
    for name, text in files.items():
        path = args.out / name
        old = path.read_text(encoding="utf-8") if path.is_file() else ""
        if old == text:
            continue
        stale.append(name)
        if args.check:
            sys.stdout.writelines(difflib.unified_diff(
                old.splitlines(keepends=True), text.splitlines(keepends=True),
                f"committed/{name}", f"generated/{name}",
            ))
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if args.check and stale:
        print(f"\nstale: {', '.join(stale)}; run `python -m tools.bindgen`", file=sys.stderr)
        return 1
    if not stale:
        print("up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
