"""Prefill and decode speed of a :class:`~llama_binding.Llama`, measured the way llama.cpp's
``llama-bench`` measures its ``pp`` and ``tg`` tests, and llama-bench itself (the copy built
with this package, ``LLAMA_BINDING_TOOLS=ON``) run on the same model for comparison.

What is timed, beside what llama-bench times (``tools/llama-bench/llama-bench.cpp``):

- ``pp<n>`` (prefill): llama-bench clears the KV memory and decodes ``n`` tokens (BOS when
  the vocabulary adds one, then random ids) in batches of ``n_batch``, the last token's
  logits out, then synchronizes. Here: :meth:`Llama.reset` then :meth:`Llama.eval` of the
  same kind of tokens, which decodes them in batches of ``n_batch`` and reads the last
  token's logits (the read waits for the decode).
- ``tg<n>`` (decode): llama-bench clears the memory and decodes ``n`` single tokens one
  after the other from position 0 (BOS first, then random ids), each with its logits out,
  synchronizing after each; it samples nothing. Here: :meth:`Llama.create_completion`
  greedy (``temperature=0``: the argmax, taken in C or on the GPU) of ``n`` tokens from
  BOS: what a user's call runs, ``n`` decodes of one token each (the prompt's, then every
  token but the last), plus the argmax llama-bench leaves out. When the model ends its
  text early the runs go on with its end token banned (``logit_bias``), so every
  repetition decodes exactly ``n`` tokens.

Both run a warm-up first (a whole prefill, a one-token decode) and report the median of
``reps`` repetitions; llama-bench gets the same ``-p``/``-n``/``-r``, threads, offloaded
layers, flash attention, ``n_batch`` 2048 and ``n_ubatch`` 512 (its defaults and ``Llama``'s).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Optional, Union, cast

from .capi import _loader

if TYPE_CHECKING:
    from .llama import Llama

__all__ = ["FLASH_ATTN", "FlashAttn", "Speed", "bench_name", "compare", "llama_bench", "llama_bench_path",
           "measure", "measure_decode", "measure_prefill", "parse_llama_bench"]

FlashAttn = Union[bool, Literal["auto"]]
#: the values of ``flash_attn`` by llama-bench's names (``-fa on|off|auto``)
FLASH_ATTN: dict[str, FlashAttn] = {"auto": "auto", "on": True, "off": False}


@dataclass(frozen=True)
class Speed:
    """Tokens per second of one test (``pp512``, ``tg128``), one sample per repetition."""

    test: str
    n_tokens: int
    samples: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.samples))


def bench_name(n_prompt: int, n_gen: int, depth: int = 0) -> str:
    """llama-bench's name of a test: ``pp512``, ``tg128``, ``tg128 @ d512``."""
    name = f"pp{n_prompt}" if n_gen == 0 else f"tg{n_gen}" if n_prompt == 0 else f"pp{n_prompt}+tg{n_gen}"
    return f"{name} @ d{depth}" if depth else name


def _first_token(llm: Llama, rng: random.Random) -> int:
    """BOS when the vocabulary adds one, else a random id (llama-bench's first token)."""
    return llm.token_bos() if llm.engine.vocab.add_bos() else rng.randrange(llm.n_vocab())


def _prefill_once(llm: Llama, n_prompt: int, rng: random.Random) -> float:
    tokens = [_first_token(llm, rng)] + [rng.randrange(llm.n_vocab()) for _ in range(n_prompt - 1)]
    llm.reset()
    t0 = time.perf_counter()
    llm.eval(tokens)
    return n_prompt / (time.perf_counter() - t0)


def _decode_once(llm: Llama, n_gen: int, rng: random.Random, opts: dict[str, Any]) -> float:
    first = _first_token(llm, rng)
    llm.reset()
    t0 = time.perf_counter()
    out = llm.create_completion([first], max_tokens=n_gen, temperature=0.0, stream=False, **opts)
    elapsed = time.perf_counter() - t0
    n = int(cast("dict[str, Any]", out)["usage"]["completion_tokens"])
    if n < n_gen and "logit_bias" not in opts:  # it ended early: again, its end banned
        opts["logit_bias"] = {llm.token_eos(): -1e9}
        return _decode_once(llm, n_gen, rng, opts)
    return n / elapsed


def measure_prefill(llm: Llama, n_prompt: int, reps: int = 3, warmup: bool = True, seed: int = 0) -> Speed:
    """Prefill tokens/s of ``n_prompt`` tokens, evaluated from an empty context (see the
    module docstring)."""
    rng = random.Random(seed)
    if warmup:
        _prefill_once(llm, n_prompt, rng)
    samples = tuple(_prefill_once(llm, n_prompt, rng) for _ in range(reps))
    return Speed(bench_name(n_prompt, 0), n_prompt, samples)


def measure_decode(llm: Llama, n_gen: int, reps: int = 3, warmup: bool = True, seed: int = 0) -> Speed:
    """Decode tokens/s of ``n_gen`` greedy tokens from an empty context (see the module
    docstring)."""
    rng, opts = random.Random(seed), dict[str, Any]()
    if warmup:
        _decode_once(llm, 1, rng, opts)
    samples = tuple(_decode_once(llm, n_gen, rng, opts) for _ in range(reps))
    return Speed(bench_name(0, n_gen), n_gen, samples)


def measure(llm: Llama, n_prompt: int = 512, n_gen: int = 128, reps: int = 3) -> list[Speed]:
    """``pp<n_prompt>`` then ``tg<n_gen>`` (either left out when 0), as llama-bench runs them.
    The context needs ``max(n_prompt, n_gen + 1)`` cells."""
    out = []
    if n_prompt > 0:
        out.append(measure_prefill(llm, n_prompt, reps))
    if n_gen > 0:
        out.append(measure_decode(llm, n_gen, reps))
    return out


def llama_bench_path() -> Optional[Path]:
    """The llama-bench built with this package (None when the build left the tools out)."""
    tool = _loader.lib_dir().parent / "bin" / "llama-bench"
    return tool if tool.is_file() and os.access(tool, os.X_OK) else None


def _flash_attn_arg(flash_attn: FlashAttn) -> str:
    return "auto" if flash_attn == "auto" else "on" if flash_attn else "off"


def llama_bench(model: Union[str, os.PathLike[str]], *, n_prompt: int = 512, n_gen: int = 128, depth: int = 0,
                reps: int = 3, threads: int = 0, n_gpu_layers: int = -1, flash_attn: FlashAttn = "auto",
                n_batch: int = 2048, n_ubatch: int = 512, tool: Optional[Path] = None,
                extra: Sequence[str] = ()) -> list[Speed]:
    """Run llama-bench (``-o json``) on ``model`` and return its tests' speeds (the samples of
    its repetitions). ``threads`` 0: llama-bench's default (the physical cores). Raises
    FileNotFoundError without the tool, subprocess.CalledProcessError when it fails."""
    tool = tool or llama_bench_path()
    if tool is None:
        raise FileNotFoundError("llama-bench is not built: install with LLAMA_BINDING_TOOLS=ON")
    cmd = [str(tool), "-m", os.fspath(model), "-p", str(n_prompt), "-n", str(n_gen), "-d", str(depth),
           "-r", str(reps), "-ngl", str(n_gpu_layers), "-fa", _flash_attn_arg(flash_attn),
           "-b", str(n_batch), "-ub", str(n_ubatch), "-o", "json", *extra]
    if threads > 0:
        cmd += ["-t", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=True)
    return parse_llama_bench(done.stdout)


def parse_llama_bench(text: str) -> list[Speed]:
    """The tests of llama-bench's ``-o json`` output."""
    tests: list[dict[str, Any]] = json.loads(text)
    out = []
    for t in tests:
        n_prompt, n_gen = int(t["n_prompt"]), int(t["n_gen"])
        samples = tuple(float(x) for x in t.get("samples_ts") or [t["avg_ts"]])
        out.append(Speed(bench_name(n_prompt, n_gen, int(t.get("n_depth", 0))), n_prompt + n_gen, samples))
    return out


def compare(ours: Sequence[Speed], theirs: Optional[Sequence[Speed]]) -> list[dict[str, Any]]:
    """One row per test of ``ours``: its median t/s, llama-bench's (None when it did not run
    that test) and their ratio (ours / llama-bench)."""
    by_name = {s.test: s for s in theirs or ()}
    rows = []
    for s in ours:
        other = by_name.get(s.test)
        rows.append({"test": s.test, "n_tokens": s.n_tokens, "ours_tps": s.median,
                     "ours_samples": list(s.samples),
                     "llama_bench_tps": other.median if other else None,
                     "llama_bench_samples": list(other.samples) if other else None,
                     "ratio": s.median / other.median if other and other.median > 0 else None})
    return rows
