"""``llama_binding.quantize`` and ``llama-binding quantize`` against llama.cpp's own
``llama-quantize``: the same options give the same bytes."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import llama_binding
from llama_binding.capi import _loader
from llama_binding.core.metadata import read_metadata, read_tensors
from llama_binding.errors import ModelLoadError
from llama_binding.quantize import file_types


def _tool() -> Path:
    tool = _loader.lib_dir().parent / "bin" / "llama-quantize"
    if not tool.is_file():
        pytest.skip("llama-quantize not built: install with LLAMA_BINDING_TOOLS=ON (CI does)")
    return tool


@pytest.fixture(scope="module")
def f32_model(tiny_model: Callable[..., Path]) -> Path:
    """A tiny F32 Llama whose tensors are large enough for k-quant blocks (256 wide)."""
    return tiny_model(vocab="llama-spm", n_embd=256, n_head=4, n_head_kv=2, n_ff=512, n_layer=2)


@pytest.mark.parametrize("kind", ["Q8_0", "Q4_K_M"])
def test_byte_identical_to_llama_quantize(f32_model: Path, tmp_path: Path, kind: str) -> None:
    ours, theirs = tmp_path / f"ours-{kind}.gguf", tmp_path / f"theirs-{kind}.gguf"
    llama_binding.quantize(f32_model, ours, kind, threads=2)
    r = subprocess.run([str(_tool()), str(f32_model), str(theirs), kind, "2"], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert ours.read_bytes() == theirs.read_bytes()
    types = {t.type for t in read_tensors(ours)}
    assert ("q8_0" in types) if kind == "Q8_0" else ({"q4_K"} & types or {"q5_K", "q6_K"} & types), types
    assert read_metadata(ours)["general.file_type"] == file_types()[kind]


def test_bad_arguments(f32_model: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown type 'Q9_9'"):
        llama_binding.quantize(f32_model, tmp_path / "x.gguf", "Q9_9")
    with pytest.raises(ValueError, match="unknown tensor type"):
        llama_binding.quantize(f32_model, tmp_path / "x.gguf", "Q8_0", output_tensor_type="q99")
    with pytest.raises(ModelLoadError, match="no model file"):
        llama_binding.quantize(tmp_path / "missing.gguf", tmp_path / "x.gguf", "Q8_0")
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\0" * 40)
    with pytest.raises(ModelLoadError, match="failed"):
        llama_binding.quantize(bad, tmp_path / "x.gguf", "Q8_0")


def test_the_command(f32_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "q.gguf"
    r = subprocess.run([sys.executable, "-m", "llama_binding", "quantize", str(f32_model), str(out), "q8_0"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0 and out.is_file() and "wrote" in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "llama_binding", "quantize", str(f32_model), str(out), "nope"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "unknown type 'nope'" in r.stderr
