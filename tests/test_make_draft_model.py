"""bench/make_draft_model.py: a SmolLM2 cut to its first layers loads, shares the full
model's tokenizer, and generates."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from llama_binding import Llama

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("LLAMA_BINDING_MODELS", REPO.parent / "shared" / "models"))
SMOLLM2 = SHARED_MODELS / "SmolLM2-135M-Instruct.Q4_1.gguf"
STRINGS = [b"The capital of France is", b"  def f(x):\n\treturn x**2", "d\xe9j\xe0 vu 123456".encode()]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("make_draft_model", REPO / "bench" / "make_draft_model.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def full() -> Path:
    if not SMOLLM2.is_file():
        pytest.skip(f"{SMOLLM2.name} not found in {SHARED_MODELS} (set LLAMA_BINDING_MODELS)")
    return SMOLLM2


@pytest.fixture(scope="module")
def draft(full: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Llama]:
    path = tmp_path_factory.mktemp("draft") / "draft2.gguf"
    _script().write_truncated(full, path, 2)
    with Llama(str(path), vocab_only=False, n_ctx=256, verbose=False) as llm:
        yield llm


def test_block_count(draft: Llama) -> None:
    assert draft.metadata["llama.block_count"] == 2


def test_same_tokenizer(draft: Llama, full: Path) -> None:
    with Llama(str(full), vocab_only=True, verbose=False) as ref:
        assert draft.n_vocab() == ref.n_vocab()
        for text in STRINGS:
            assert draft.tokenize(text) == ref.tokenize(text)
        special = b"<|im_start|>user\nhi<|im_end|>"
        assert draft.tokenize(special, special=True) == ref.tokenize(special, special=True)


def test_greedy_generation(draft: Llama) -> None:
    out = draft.create_completion("The capital of France is", max_tokens=8, temperature=0)
    assert isinstance(out, dict)  # not a stream
    assert out["usage"]["completion_tokens"] == 8
    assert isinstance(out["choices"][0]["text"], str)


def test_bad_arguments(full: Path, tmp_path: Path) -> None:
    # n_layers >= block_count raises too, but only after GGUFReader's ~2 s parse: left out for speed
    script = _script()
    with pytest.raises(ValueError):
        script.write_truncated(full, tmp_path / "x.gguf", 0)
    with pytest.raises(FileNotFoundError):
        script.write_truncated(tmp_path / "missing.gguf", tmp_path / "x.gguf", 2)
    assert not (tmp_path / "x.gguf").exists()
