"""Prompt caches through Llama: a later prompt that extends a cached prefix restores the
cached sequence state instead of evaluating it, in a fresh context and in a new process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from llama_binding import Llama, LlamaDiskCache, LlamaRAMCache

PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside in the park"
MORE = " with her dog"


def _evaluated(llm: Llama, prompt: str) -> tuple[str, float]:
    """(greedy text, prompt tokens llama.cpp evaluated for it)."""
    llm.engine.context.perf_reset()
    text = llm(prompt, max_tokens=12, temperature=0.0)["choices"][0]["text"]
    return text, llm.engine.context.perf()["n_p_eval"]


def test_ram_cache_restores_a_prefix_in_a_fresh_context(stories260k: Path) -> None:
    cache = LlamaRAMCache(capacity_bytes=64 << 20)
    with Llama(stories260k, n_ctx=256) as plain:
        expected, full = _evaluated(plain, PROMPT + MORE)
    with Llama(stories260k, n_ctx=256) as first:
        first.set_cache(cache)
        first(PROMPT, max_tokens=4, temperature=0.0)
    assert len(cache) == 2 and cache.cache_size > 0  # after the prompt, and at the end
    with Llama(stories260k, n_ctx=256) as second:
        second.set_cache(cache)
        text, evaluated = _evaluated(second, PROMPT + MORE)
    assert text == expected
    assert evaluated < full / 3  # only the tokens after the cached prefix


def test_cache_keys_keep_other_contexts_apart(stories260k: Path) -> None:
    cache = LlamaRAMCache(capacity_bytes=64 << 20)
    with Llama(stories260k, n_ctx=256) as a:
        a.set_cache(cache)
        a(PROMPT, max_tokens=2, temperature=0.0)
    with Llama(stories260k, n_ctx=512) as b:  # another KV size: the entry does not fit
        b.set_cache(cache)
        _, evaluated = _evaluated(b, PROMPT + MORE)
        assert evaluated == len(b.tokenize((PROMPT + MORE).encode()))
    with pytest.raises(TypeError, match="LlamaRAMCache"):
        a.set_cache({})  # type: ignore[arg-type]


WRITER = """
import sys
from llama_binding import Llama, LlamaDiskCache
llm = Llama(sys.argv[1], n_ctx=256)
llm.set_cache(LlamaDiskCache(sys.argv[2], 64 << 20))
llm(sys.argv[3], max_tokens=4, temperature=0.0)
"""


def test_disk_cache_survives_a_new_process(stories260k: Path, tmp_path: Path) -> None:
    folder = tmp_path / "cache"
    subprocess.run([sys.executable, "-c", WRITER, str(stories260k), str(folder), PROMPT], check=True,
                   capture_output=True, timeout=60)
    with Llama(stories260k, n_ctx=256) as plain:
        expected, full = _evaluated(plain, PROMPT + MORE)
    with Llama(stories260k, n_ctx=256) as llm:
        llm.set_cache(LlamaDiskCache(folder, 64 << 20))
        text, evaluated = _evaluated(llm, PROMPT + MORE)
    assert text == expected and evaluated < full / 3


def test_a_damaged_disk_entry_is_dropped_not_fatal(stories260k: Path, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    import diskcache

    folder = tmp_path / "cache"
    with Llama(stories260k, n_ctx=256) as llm:
        llm.set_cache(LlamaDiskCache(folder, 64 << 20))
        llm(PROMPT, max_tokens=4, temperature=0.0)
        expected, full = _evaluated(Llama(stories260k, n_ctx=256), PROMPT + MORE)
    raw = diskcache.Cache(str(folder))
    for name in list(raw):
        if name.startswith(LlamaDiskCache._PREFIX):
            value = bytearray(raw[name])
            value[-10] ^= 0xFF
            raw[name] = bytes(value)
    raw.close()
    with Llama(stories260k, n_ctx=256) as llm:
        llm.set_cache(LlamaDiskCache(folder, 64 << 20))
        with caplog.at_level("WARNING", logger="llama_binding"):
            text, evaluated = _evaluated(llm, PROMPT + MORE)
    assert text == expected and evaluated == full
    assert any("damaged" in r.getMessage() or "corrupt" in r.getMessage() for r in caplog.records)
