"""``llama-binding bench MODEL``: prefill and decode tokens/s of this package beside
llama.cpp's llama-bench (the copy built with it) on the same model and settings.

``pp<n>``: a prompt of ``-p`` tokens decoded from an empty context in batches of 2048;
``tg<n>``: ``-n`` tokens decoded one at a time, greedy. Each the median of ``-r``
repetitions after a warm-up, measured as llama-bench measures its tests
(``llama_binding.benchmark`` says how).
``--json`` prints the result as JSON; ``--no-llama-bench`` measures this package only.
"""

from __future__ import annotations

import argparse
import os
import subprocess

from .. import Llama
from ..benchmark import FLASH_ATTN, Speed, compare, llama_bench, llama_bench_path, measure
from ..core.context import physical_cores
from ..errors import LlamaError
from .output import Output

__all__ = ["build_parser", "run"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="llama-binding bench", description=__doc__.split("\n\n")[0])
    p.add_argument("model", help="path of a GGUF file")
    p.add_argument("-p", "--n-prompt", "--n_prompt", dest="n_prompt", type=int, default=512,
                   help="prompt tokens of the prefill test (0: no prefill test)")
    p.add_argument("-n", "--n-gen", "--n_gen", dest="n_gen", type=int, default=128,
                   help="tokens of the decode test (0: no decode test)")
    p.add_argument("-r", "--repetitions", dest="reps", type=int, default=3,
                   help="repetitions (the median is shown)")
    p.add_argument("-t", "--threads", type=int, default=0,
                   help="CPU threads for both (0: the physical cores)")
    p.add_argument("-ngl", "--n-gpu-layers", "--n_gpu_layers", dest="n_gpu_layers", type=int, default=-1,
                   help="layers offloaded to the GPU (-1: all)")
    p.add_argument("-fa", "--flash-attn", "--flash_attn", dest="flash_attn", choices=sorted(FLASH_ATTN),
                   default="auto", help="flash attention")
    p.add_argument("--n-ctx", "--n_ctx", dest="n_ctx", type=int, default=0,
                   help="context of this package's Llama (0: the larger test's tokens, as llama-bench)")
    p.add_argument("--no-llama-bench", "--no_llama_bench", dest="no_llama_bench", action="store_true",
                   help="measure this package only")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no messages on stderr")
    return p


def _check(p: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.n_prompt < 0 or args.n_gen < 0 or args.n_prompt + args.n_gen == 0:
        p.error("-p and -n must be >= 0, and one of them > 0")
    if args.reps < 1:
        p.error("-r must be >= 1")
    need = max(args.n_prompt, args.n_gen + 1)
    if args.n_ctx and args.n_ctx < need:
        p.error(f"--n-ctx {args.n_ctx} is smaller than the tests need ({need})")


def run(argv: list[str], out: Output | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _check(parser, args)
    out = out or Output(quiet=args.quiet)
    if not os.path.isfile(args.model):
        out.error(f"no such file: {args.model}")
        return 1
    try:
        return _bench(args, out)
    except KeyboardInterrupt:  # during ours or llama-bench's run
        out.note("stopped")
        return 130


def _bench(args: argparse.Namespace, out: Output) -> int:
    threads = args.threads or physical_cores()
    try:
        llm = Llama(args.model, n_ctx=args.n_ctx or max(args.n_prompt, args.n_gen + 1),
                    n_gpu_layers=args.n_gpu_layers, n_threads=threads, n_threads_batch=threads,
                    flash_attn=FLASH_ATTN[args.flash_attn], progress=not args.quiet and not args.json)
    except LlamaError as exc:
        out.error(f"could not load {args.model}: {exc}")
        return 1
    with llm:  # closed before llama-bench loads the model: one copy in memory, no idle threads of ours
        try:
            ours = measure(llm, args.n_prompt, args.n_gen, args.reps)
        except LlamaError as exc:
            out.error(str(exc))
            return 1
    theirs, note = _llama_bench(args, threads)
    if note:
        out.note(note)
    _report(out, args, threads, ours, theirs, note)
    return 0


def _llama_bench(args: argparse.Namespace, threads: int) -> tuple[list[Speed] | None, str]:
    """llama-bench's speeds on the same tests (None when it did not run) and a note why not."""
    if args.no_llama_bench:
        return None, ""
    tool = llama_bench_path()
    if tool is None:
        return None, "llama-bench is not built in this install (LLAMA_BINDING_TOOLS=ON builds it): ours only"
    try:
        return llama_bench(args.model, n_prompt=args.n_prompt, n_gen=args.n_gen, reps=args.reps,
                           threads=threads, n_gpu_layers=args.n_gpu_layers,
                           flash_attn=FLASH_ATTN[args.flash_attn], tool=tool), ""
    except subprocess.CalledProcessError as exc:
        last = (exc.stderr or "").strip().splitlines()[-1:] or [f"exit status {exc.returncode}"]
        return None, f"llama-bench failed ({last[0]}): ours only"
    except (OSError, ValueError, KeyError) as exc:  # not runnable, or output we cannot read
        return None, f"llama-bench gave no result ({exc}): ours only"


def _report(out: Output, args: argparse.Namespace, threads: int, ours: list[Speed],
            theirs: list[Speed] | None, note: str) -> None:
    rows = compare(ours, theirs)
    if args.json:
        out.json({"model": os.path.abspath(args.model), "n_prompt": args.n_prompt, "n_gen": args.n_gen,
                  "repetitions": args.reps, "threads": threads, "n_gpu_layers": args.n_gpu_layers,
                  "flash_attn": args.flash_attn, "llama_bench": theirs is not None,
                  "note": note or None, "tests": rows})
        return
    out.line(f"{os.path.basename(args.model)}: threads {threads}, n_gpu_layers {args.n_gpu_layers}, "
             f"flash_attn {args.flash_attn}, median of {args.reps}")
    with_theirs = theirs is not None
    head = ("test", "ours t/s", "llama-bench t/s", "ratio")
    table: list[tuple[str, ...]] = [head if with_theirs else head[:2]]
    for r in rows:
        cells: tuple[str, ...] = (r["test"], f"{r['ours_tps']:.1f}")
        if with_theirs:
            cells += (_number(r["llama_bench_tps"], ".1f"), _number(r["ratio"], ".3f"))
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        out.line("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))))


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)
