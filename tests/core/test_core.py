"""Core objects on real models: ownership, decode, logits views, KV memory, samplers."""

from __future__ import annotations

import ctypes
import gc
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from llama_binding.core import (
    Batch,
    Context,
    ContextParams,
    Model,
    ModelParams,
    Sampler,
    SamplerChain,
    Vocab,
)
from llama_binding.errors import (
    ClosedError,
    DecodeAbortedError,
    InvalidBatchError,
    ModelLoadError,
    SamplerError,
)


def _greedy(ctx: Context, vocab: Vocab, prompt: str, n: int) -> str:
    tokens = vocab.tokenize(prompt)
    batch = Batch(max(len(tokens), 1))
    batch.add_sequence(tokens, 0)
    chain = SamplerChain([Sampler.greedy()])
    out = []
    pos = len(tokens)
    for _ in range(n):
        ctx.decode(batch)
        tok = chain.sample(ctx)
        if vocab.is_eog(tok):
            break
        out.append(vocab.token_to_piece(tok))
        batch.clear()
        batch.add(tok, pos, (0,), True)
        pos += 1
    return b"".join(out).decode()


@pytest.fixture
def stories(stories260k: Path) -> Model:
    m = Model(stories260k)
    yield m
    m.close()


def test_greedy_matches_reference_text(stories: Model) -> None:
    with Context(stories, ContextParams(n_ctx=256)) as ctx:
        text = _greedy(ctx, Vocab(stories), "Once upon a time", 24)
    assert text.startswith(", there was a little girl named Lily.")


def test_close_is_idempotent_and_use_after_close_is_clear(stories260k: Path) -> None:
    model = Model(stories260k)
    ctx = Context(model, ContextParams(n_ctx=64))
    vocab = Vocab(model)
    ctx.close()
    ctx.close()
    with pytest.raises(ClosedError, match="context is closed"):
        ctx.n_ctx  # noqa: B018
    model.close()
    with pytest.raises(ClosedError, match="model is closed"):
        vocab.tokenize("hi")


def test_closing_a_model_closes_its_contexts_first(stories260k: Path) -> None:
    model = Model(stories260k)
    ctx = Context(model, ContextParams(n_ctx=64))
    batch = Batch(2)
    batch.add(1, 0, (0,), True)
    ctx.decode(batch)
    model.close()
    assert ctx.closed
    with pytest.raises(ClosedError):
        ctx.decode(batch)


def test_context_keeps_its_model_alive(stories260k: Path) -> None:
    ctx = Context(Model(stories260k), ContextParams(n_ctx=64))
    gc.collect()
    assert not ctx.model.closed
    assert ctx.n_ctx >= 64


def test_logits_are_zero_copy_views(stories: Model) -> None:
    ctx = Context(stories, ContextParams(n_ctx=64))
    vocab = Vocab(stories)
    batch = Batch(8)
    batch.add_sequence(vocab.tokenize("Once"), 0)
    ctx.decode(batch)
    view = ctx.logits(-1)
    assert view.shape == (vocab.n_tokens,) and view.dtype == np.float32
    assert not view.flags.owndata
    assert int(np.argmax(view)) == SamplerChain([Sampler.greedy()]).sample(ctx)
    with pytest.raises(IndexError):
        ctx.logits(5)


def test_kv_memory_per_sequence(stories: Model) -> None:
    ctx = Context(stories, ContextParams(n_ctx=128, n_seq_max=2, kv_unified=True))
    vocab = Vocab(stories)
    tokens = vocab.tokenize("Once upon a time")
    batch = Batch(16, n_seq_max=2)
    batch.add_sequence(tokens, 0, seq_id=0)
    ctx.decode(batch)
    assert ctx.seq_pos_max(0) == len(tokens) - 1
    assert ctx.seq_pos_max(1) == -1
    ctx.seq_cp(0, 1)
    assert ctx.seq_pos_max(1) == len(tokens) - 1
    assert ctx.seq_rm(1, 2, -1)
    assert ctx.seq_pos_max(1) == 1
    ctx.seq_keep(0)
    assert ctx.seq_pos_max(1) == -1
    assert ctx.n_ctx_seq == ctx.n_ctx


def test_invalid_batch_raises_typed_error(stories: Model) -> None:
    ctx = Context(stories, ContextParams(n_ctx=64))
    batch = Batch(2)
    batch.add(10**6, 0, (0,), True)  # token outside the vocabulary
    with pytest.raises(InvalidBatchError):
        ctx.decode(batch)
    batch.clear()
    batch.add(1, 0, (0,), True)
    ctx.decode(batch)  # still usable


def test_cancel_aborts_decode_and_context_stays_usable(stories: Model) -> None:
    ctx = Context(stories, ContextParams(n_ctx=64))
    batch = Batch(4)
    batch.add_sequence([1, 403, 407], 0)
    ctx.cancel()
    with pytest.raises(DecodeAbortedError):
        ctx.decode(batch)
    ctx.memory_clear()
    ctx.decode(batch)  # the flag was consumed by the aborted decode


def test_cancel_from_another_thread_stops_a_long_prefill(tiny_spm: Path) -> None:
    # CPU only: the CUDA backend does not call the abort callback inside a decode
    model = Model(tiny_spm, ModelParams(n_gpu_layers=0))
    ctx = Context(model, ContextParams(n_ctx=4096, n_batch=4096, n_ubatch=512))
    batch = Batch(4096)
    batch.add_sequence([(i % 1000) + 100 for i in range(4096)], 0)
    timer = threading.Timer(0.05, ctx.cancel)
    timer.start()
    with pytest.raises(DecodeAbortedError):
        ctx.decode(batch)
    timer.join()


def test_sampler_chain_owns_its_samplers(stories: Model) -> None:
    vocab = Vocab(stories)
    n_vocab = vocab.n_tokens
    samplers = [
        Sampler.penalties(n_vocab, 64, 1.1, 0.0, 0.0),
        Sampler.dry(vocab, 0.8, 1.75, 2, 64),
        Sampler.logit_bias(n_vocab, {5: -100.0}),
        Sampler.top_k(40), Sampler.typical(0.9), Sampler.top_p(0.95), Sampler.min_p(0.05),
        Sampler.xtc(0.1, 0.1), Sampler.top_n_sigma(2.0), Sampler.temp_ext(0.8, 0.1, 1.0),
        Sampler.temp(0.8), Sampler.dist(42),
    ]
    chain = SamplerChain(samplers)
    assert all(s.closed for s in samplers)
    assert chain.address == ctypes.cast(chain.ptr, ctypes.c_void_p).value != 0  # (kept from creation)
    assert chain.names()[0] == "penalties" and chain.names()[-1] == "dist"
    with pytest.raises(ClosedError):
        chain.add(samplers[0])
    for extra in (Sampler.mirostat(n_vocab, 5.0, 0.1), Sampler.mirostat_v2(5.0, 0.1),
                  Sampler.adaptive_p(0.5, 0.9), Sampler.infill(vocab)):
        assert extra.name
        extra.close()
    ctx = Context(stories, ContextParams(n_ctx=64))
    batch = Batch(4)
    batch.add_sequence([1, 403], 0)
    ctx.decode(batch)
    assert 0 <= chain.sample(ctx) < n_vocab
    chain.close()
    with pytest.raises(ClosedError):
        chain.address  # noqa: B018 (a freed chain's address would crash Context.sample_rows)


def test_seeded_sampling_reproduces(stories: Model) -> None:
    vocab = Vocab(stories)

    def run(seed: int) -> list[int]:
        ctx = Context(stories, ContextParams(n_ctx=64))
        chain = SamplerChain([Sampler.top_k(40), Sampler.temp(1.0), Sampler.dist(seed)])
        batch = Batch(8)
        batch.add_sequence(vocab.tokenize("Once upon"), 0)
        out, pos = [], batch.n_tokens
        for _ in range(12):
            ctx.decode(batch)
            tok = chain.sample(ctx)
            out.append(tok)
            batch.clear()
            batch.add(tok, pos, (0,), True)
            pos += 1
        return out

    assert run(7) == run(7)
    assert run(7) != run(8)


def test_invalid_grammar_raises_at_once(stories: Model) -> None:
    vocab = Vocab(stories)
    with pytest.raises(SamplerError, match="grammar"):
        Sampler.grammar(vocab, 'root ::= "unterminated')
    with pytest.raises(SamplerError):
        Sampler.grammar(vocab, "root ::= undefined-rule")
    ok = Sampler.grammar(vocab, 'root ::= "yes" | "no"')
    lazy = Sampler.grammar_lazy(vocab, 'root ::= "x"', trigger_patterns=["<tool>"])
    assert ok.name and lazy.name


@pytest.mark.parametrize("make", [
    lambda p: Path(p / "missing.gguf"),
    lambda p: p,
])
def test_bad_model_paths_raise(tmp_path: Path, make: object) -> None:
    with pytest.raises(ModelLoadError):
        Model(make(tmp_path))  # type: ignore[operator]


def test_truncated_and_fake_gguf_raise_in_a_subprocess(tmp_path: Path, stories260k: Path) -> None:
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(stories260k.read_bytes()[:100_000])
    fake = tmp_path / "text.gguf"
    fake.write_text("hello, I am not a model\n")
    code = (
        "import sys\n"
        "from llama_binding.core import Model\n"
        "from llama_binding.errors import ModelLoadError\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        Model(p)\n"
        "    except ModelLoadError as e:\n"
        "        print('refused', e)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(truncated), str(fake)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("refused") == 2


def test_model_params_and_metadata(stories260k: Path) -> None:
    progress: list[float] = []
    model = Model(stories260k, ModelParams(n_gpu_layers=0, kv_overrides={"llama.context_length": 1000}),
                  progress=progress.append)
    assert progress and progress[-1] == pytest.approx(1.0)
    assert model.n_ctx_train == 1000  # the override, not the file's 2048
    assert model.meta()["general.architecture"] == "llama"
    assert model.n_layer == 5 and model.n_embd == 64
    with pytest.raises(TypeError):
        ModelParams(kv_overrides={"x": [1]}).to_c()  # type: ignore[dict-item]


def test_progress_callback_can_cancel_loading(stories260k: Path) -> None:
    with pytest.raises(ModelLoadError, match="cancelled"):
        Model(stories260k, progress=lambda v: False)


@pytest.mark.parametrize("friendly, generated, prefix", [
    ("LoadMode", "llama_load_mode", "LLAMA_LOAD_MODE_"),
    ("SplitMode", "llama_split_mode", "LLAMA_SPLIT_MODE_"),
    ("FlashAttnType", "llama_flash_attn_type", "LLAMA_FLASH_ATTN_TYPE_"),
    ("PoolingType", "llama_pooling_type_enum", "LLAMA_POOLING_TYPE_"),
])
def test_friendly_enums_match_the_header(friendly: str, generated: str, prefix: str) -> None:
    """The core's short-named enums stay in step with the generated C enums."""
    from llama_binding import capi, core

    ours = {m.name: m.value for m in getattr(core, friendly)}
    theirs = {name.removeprefix(prefix): int(v) for name, v in getattr(capi, generated).__members__.items()}
    assert ours == theirs


def test_ctrl_c_aborts_a_long_decode_and_leaves_the_context_usable(tiny_spm: Path) -> None:
    """SIGINT during a long CPU prefill: KeyboardInterrupt well before the decode would end."""
    code = f"""
import os, signal, sys, threading, time
from llama_binding.core import Batch, Context, ContextParams, Model, ModelParams
model = Model({str(tiny_spm)!r}, ModelParams(n_gpu_layers=0))
ctx = Context(model, ContextParams(n_ctx=4096, n_batch=4096, n_ubatch=512))
batch = Batch(4096)
batch.add_sequence([(i % 1000) + 100 for i in range(4096)], 0)
full = float("inf")
for _ in range(2):  # the faster of two: a decode slowed by other work would time the signal late
    t0 = time.perf_counter(); ctx.decode(batch); full = min(full, time.perf_counter() - t0)
    ctx.memory_clear()
threading.Timer(full / 10, os.kill, (os.getpid(), signal.SIGINT)).start()
t0 = time.perf_counter()
try:
    ctx.decode(batch)
    print("NOT INTERRUPTED")
except KeyboardInterrupt:
    print("interrupted after", round((time.perf_counter() - t0) / full, 2), "of a full decode")
ctx.memory_clear()
small = Batch(4); small.add_sequence([1, 2, 3], 0); ctx.decode(small)
print("usable", ctx.seq_pos_max(0))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "interrupted after" in proc.stdout and "usable 2" in proc.stdout, proc.stdout
    frac = float(proc.stdout.split("interrupted after")[1].split()[0])
    assert frac < 0.8, proc.stdout


def test_batch_add_rows_is_add_per_row() -> None:
    """``add_rows`` (one token of each of several sequences, each with its output) writes what
    the same ``add`` calls write, after what the batch holds; wrong lengths or no room raise
    and leave the batch as it was."""
    one, many = Batch(8, n_seq_max=2), Batch(8, n_seq_max=2)
    for b in (one, many):
        b.add(5, 0, (0,), False)
    for tok, pos, seq in [(7, 3, 1), (8, 9, 0), (9, 4, 1)]:
        one.add(tok, pos, (seq,), True)
    many.add_rows([7, 8, 9], [3, 9, 4], [1, 0, 1])
    assert many.n_tokens == one.n_tokens == 4
    for field in ("_np_token", "_np_pos", "_np_n_seq", "_np_logits"):
        assert getattr(many, field)[:4].tolist() == getattr(one, field)[:4].tolist()
    assert many._np_seq[:4, 0].tolist() == [0, 1, 0, 1] and many.output_indices() == [1, 2, 3]
    with pytest.raises(ValueError, match="differ in length"):
        many.add_rows([1, 2], [0], [0, 1])
    with pytest.raises(ValueError, match="full"):
        many.add_rows([1] * 5, [0] * 5, [0] * 5)
    assert many.n_tokens == 4
