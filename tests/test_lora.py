"""LoRA adapters through Llama: loading with scales, rescaling at run time, the list form,
bad files, and that changing adapters invalidates reused memory and cached states."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _tinylora import write_tiny_lora
from _tinymodel import TinySpec

from llama_binding import Llama, LlamaRAMCache, ModelLoadError

TOKENS = [1, 300, 301, 302, 303]
BASE = TinySpec()  # the tiny_spm model


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("lora")
    return (write_tiny_lora(folder / "a.gguf", BASE, seed=1),
            write_tiny_lora(folder / "b.gguf", BASE, seed=2, targets=("attn_k", "ffn_up")))


def _logits(llm: Llama) -> np.ndarray:
    llm.reset()
    llm.eval(TOKENS)
    return llm.scores[-1].copy() if llm.logits_all else llm.engine.context.logits(-1).copy()


def test_scales_change_logits_and_zero_is_the_base(tiny_spm: Path, adapters: tuple[Path, Path]) -> None:
    a, _ = adapters
    with Llama(tiny_spm, n_ctx=64) as base, Llama(tiny_spm, n_ctx=64, lora_path=a, lora_scale=1.0) as llm:
        ref = _logits(base)
        with_a = _logits(llm)
        assert not np.allclose(ref, with_a, atol=1e-4)
        assert llm.lora_adapters == {str(a): 1.0}
        llm.set_lora(a, 0.0)  # off at run time, without reloading
        np.testing.assert_array_equal(_logits(llm), ref)
        llm.set_lora(a, 1.0)
        np.testing.assert_array_equal(_logits(llm), with_a)
        llm.unload_lora(a)
        assert llm.lora_adapters == {}
        np.testing.assert_array_equal(_logits(llm), ref)


def test_list_form_and_two_adapters(tiny_spm: Path, adapters: tuple[Path, Path]) -> None:
    a, b = adapters
    with Llama(tiny_spm, n_ctx=64, lora_adapters=[(str(a), 0.5), (str(b), 1.0)]) as both, \
            Llama(tiny_spm, n_ctx=64, lora_adapters={str(a): 0.5}) as one:
        assert both.lora_adapters == {str(a): 0.5, str(b): 1.0}
        assert not np.allclose(_logits(both), _logits(one), atol=1e-4)
        both.set_lora(b, 0.0)
        np.testing.assert_array_equal(_logits(both), _logits(one))


def test_changing_adapters_invalidates_reuse_and_caches(tiny_spm: Path, adapters: tuple[Path, Path]) -> None:
    a, _ = adapters
    cache = LlamaRAMCache(16 << 20)
    with Llama(tiny_spm, n_ctx=128) as llm:
        llm.set_cache(cache)
        llm(TOKENS, max_tokens=2, temperature=0.0)
        assert llm.n_tokens > 0
        llm.load_lora(a, 1.0)
        assert llm.n_tokens == 0  # memory computed without the adapter is not reused
        llm.engine.context.perf_reset()
        llm([*TOKENS, 304], max_tokens=1, temperature=0.0)
        assert llm.engine.context.perf()["n_p_eval"] == len(TOKENS) + 1  # nor is the cached state


def test_bad_adapters_raise_and_change_nothing(tiny_spm: Path, tmp_path: Path,
                                               adapters: tuple[Path, Path]) -> None:
    text = tmp_path / "notes.gguf"
    text.write_text("not an adapter")
    with Llama(tiny_spm, n_ctx=64) as llm:
        for bad in (tmp_path / "missing.gguf", text, tiny_spm):
            with pytest.raises(ModelLoadError):
                llm.load_lora(bad)
        assert llm.lora_adapters == {}
        llm.load_lora(adapters[0])
        with pytest.raises(ValueError, match="loaded already"):
            llm.load_lora(adapters[0])
        with pytest.raises(KeyError):
            llm.set_lora(adapters[1], 1.0)
        with pytest.raises(ValueError, match="finite"):
            llm.set_lora(adapters[0], float("inf"))
        assert llm.lora_adapters == {str(adapters[0]): 1.0}
    with pytest.raises(ModelLoadError):
        Llama(tiny_spm, n_ctx=64, lora_path=text)
    with pytest.raises(ValueError, match="vocab_only"):
        Llama(tiny_spm, vocab_only=True, lora_path=adapters[0])


