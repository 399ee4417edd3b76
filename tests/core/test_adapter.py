"""LoRA adapters on a tiny random model: the logits they change, scales set and changed at run
time, lifetimes, and bad adapter files.

Every comparison decodes the same prompt from an empty KV memory and copies the last logits,
so two runs with the same adapters and scales must agree bit for bit. Loading a bad file
runs in a child interpreter (as in tests/test_bad_inputs.py): where llama.cpp would abort,
the child dies and the test fails with its stderr, instead of pytest dying with it.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from _tinylora import write_tiny_lora
from _tinymodel import TinySpec, finish_gguf

from llama_binding.core import Batch, Context, ContextParams, Model, Vocab
from llama_binding.core.adapter import LoraAdapter, set_adapters
from llama_binding.errors import ClosedError, ModelLoadError

__all__: list[str] = []

BASE = TinySpec()  # the default tiny model, as tiny_spm uses
PROMPT = "The quick brown fox jumps over the lazy dog"
Logits = npt.NDArray[np.float32]


# --- fixtures ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_path(tiny_model: Callable[..., Path]) -> Path:
    return tiny_model()


@pytest.fixture(scope="module")
def model(base_path: Path) -> Iterator[Model]:
    m = Model(base_path)
    yield m
    m.close()


@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("lora")


@pytest.fixture(scope="module")
def lora_q_v(lora_dir: Path) -> Path:
    """Adapts attn_q and attn_v of every block (rank 4, alpha 4: effective factor 1)."""
    return write_tiny_lora(lora_dir / "q_v.gguf", BASE, rank=4, seed=1)


@pytest.fixture(scope="module")
def lora_ffn(lora_dir: Path) -> Path:
    """Adapts attn_k and the feed-forward up/down projections (rank 8)."""
    return write_tiny_lora(lora_dir / "ffn.gguf", BASE, rank=8, seed=2,
                           targets=("attn_k", "ffn_up", "ffn_down"))


@pytest.fixture
def ctx(model: Model) -> Iterator[Context]:
    with Context(model, ContextParams(n_ctx=128, n_batch=64)) as c:
        yield c


@pytest.fixture(scope="module")
def prompt(model: Model) -> list[int]:
    return Vocab(model).tokenize(PROMPT)


def logits_of(ctx: Context, tokens: Sequence[int]) -> Logits:
    """The last token's logits of ``tokens`` decoded from an empty memory (a copy)."""
    ctx.memory_clear()
    batch = Batch(len(tokens))
    batch.add_sequence(tokens, 0)
    ctx.decode(batch)
    out: Logits = ctx.logits(-1).copy()
    return out


def assert_differs(a: Logits, b: Logits) -> None:
    assert np.isfinite(a).all() and np.isfinite(b).all()
    assert np.abs(a - b).max() > 1e-3, "the adapter did not change the logits"


# --- (a)-(d): what adapters do to the logits ------------------------------------------------

def test_adapter_changes_the_logits(ctx: Context, model: Model, lora_q_v: Path, prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    with LoraAdapter(model, lora_q_v) as lora:
        set_adapters(ctx, [(lora, 1.0)])
        adapted = logits_of(ctx, prompt)
        assert_differs(adapted, base)
        assert np.array_equal(logits_of(ctx, prompt), adapted)  # reproducible


def test_scale_zero_gives_the_base_logits_exactly(ctx: Context, model: Model, lora_q_v: Path,
                                                  prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    with LoraAdapter(model, lora_q_v) as lora:
        set_adapters(ctx, [(lora, 0.0)])
        assert np.array_equal(logits_of(ctx, prompt), base)


def test_removing_the_adapters_gives_the_base_logits_back(ctx: Context, model: Model, lora_q_v: Path,
                                                          prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    with LoraAdapter(model, lora_q_v) as lora:
        set_adapters(ctx, [(lora, 1.0)])
        assert_differs(logits_of(ctx, prompt), base)
        set_adapters(ctx, [])
        assert np.array_equal(logits_of(ctx, prompt), base)
        set_adapters(ctx, [(lora, 1.0)])  # and it can be set again
        assert_differs(logits_of(ctx, prompt), base)


def test_two_adapters_rescaled_at_run_time(ctx: Context, model: Model, lora_q_v: Path, lora_ffn: Path,
                                           prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    with LoraAdapter(model, lora_q_v) as qv, LoraAdapter(model, lora_ffn) as ffn:
        set_adapters(ctx, [(qv, 1.0)])
        only_qv = logits_of(ctx, prompt)
        set_adapters(ctx, [(qv, 1.0), (ffn, 0.5)])
        both = logits_of(ctx, prompt)
        assert_differs(both, base)
        assert_differs(both, only_qv)

        set_adapters(ctx, [(qv, 0.5), (ffn, 1.0)])  # new scales, nothing reloaded
        rescaled = logits_of(ctx, prompt)
        assert_differs(rescaled, both)

        set_adapters(ctx, [(qv, 1.0), (ffn, 0.5)])  # back to the first scales: the same logits
        assert np.array_equal(logits_of(ctx, prompt), both)
        set_adapters(ctx, [(ffn, 0.5), (qv, 1.0)])  # the order of the list does not matter
        np.testing.assert_allclose(logits_of(ctx, prompt), both, rtol=0, atol=1e-5)
        set_adapters(ctx, [(qv, 1.0), (ffn, 0.0)])  # a zero scale is the adapter left out
        assert np.array_equal(logits_of(ctx, prompt), only_qv)


def test_alpha_scales_the_update_by_alpha_over_rank(ctx: Context, model: Model, lora_dir: Path,
                                                    prompt: list[int]) -> None:
    # same weights; alpha = 2 * rank with scale 0.5 is alpha = rank with scale 1
    plain = write_tiny_lora(lora_dir / "alpha4.gguf", BASE, rank=4, seed=5, alpha=4.0)
    doubled = write_tiny_lora(lora_dir / "alpha8.gguf", BASE, rank=4, seed=5, alpha=8.0)
    with LoraAdapter(model, plain) as a, LoraAdapter(model, doubled) as b:
        set_adapters(ctx, [(a, 1.0)])
        expected = logits_of(ctx, prompt)
        set_adapters(ctx, [(b, 0.5)])
        assert np.array_equal(logits_of(ctx, prompt), expected)
        set_adapters(ctx, [(b, 1.0)])
        assert_differs(logits_of(ctx, prompt), expected)


def test_an_adapter_serves_several_contexts(model: Model, lora_q_v: Path, prompt: list[int]) -> None:
    with LoraAdapter(model, lora_q_v) as lora, \
            Context(model, ContextParams(n_ctx=128)) as c1, Context(model, ContextParams(n_ctx=128)) as c2:
        base = logits_of(c2, prompt)
        set_adapters(c1, [(lora, 1.0)])
        set_adapters(c2, [(lora, 1.0)])
        assert np.array_equal(logits_of(c1, prompt), logits_of(c2, prompt))
        set_adapters(c1, [])
        assert np.array_equal(logits_of(c1, prompt), base)
        assert_differs(logits_of(c2, prompt), base)


def test_token_embedding_lora_on_an_untied_model(tiny_model: Callable[..., Path], lora_dir: Path,
                                                 prompt: list[int]) -> None:
    spec = TinySpec(tied_embeddings=False)
    path = write_tiny_lora(lora_dir / "embd.gguf", spec, targets=("token_embd", "attn_q"))
    with Model(tiny_model(tied_embeddings=False)) as m, Context(m, ContextParams(n_ctx=128)) as c, \
            LoraAdapter(m, path) as lora:
        base = logits_of(c, prompt)
        set_adapters(c, [(lora, 1.0)])
        assert_differs(logits_of(c, prompt), base)


# --- set_adapters refuses what llama.cpp would misuse ---------------------------------------

@pytest.mark.parametrize("scale", [float("inf"), float("-inf"), float("nan"), 1e39])
def test_non_finite_scales_are_refused(ctx: Context, model: Model, lora_q_v: Path, scale: float) -> None:
    with LoraAdapter(model, lora_q_v) as lora:
        with pytest.raises(ValueError, match="finite"):
            set_adapters(ctx, [(lora, scale)])


def test_bad_arguments_are_refused(ctx: Context, model: Model, lora_q_v: Path) -> None:
    with LoraAdapter(model, lora_q_v) as lora:
        with pytest.raises(TypeError, match="number"):
            set_adapters(ctx, [(lora, "1.0")])  # type: ignore[list-item]
        with pytest.raises(TypeError, match="pair"):
            set_adapters(ctx, [lora])
        with pytest.raises(TypeError, match="sequence"):
            set_adapters(ctx, lora)
        with pytest.raises(ValueError, match="twice"):
            set_adapters(ctx, [(lora, 1.0), (lora, 0.5)])


def test_an_adapter_of_another_model_is_refused(ctx: Context, base_path: Path, lora_q_v: Path,
                                                prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    with Model(base_path) as other, LoraAdapter(other, lora_q_v) as lora:
        with pytest.raises(ValueError, match="another model"):
            set_adapters(ctx, [(lora, 1.0)])
    assert np.array_equal(logits_of(ctx, prompt), base)  # nothing was set


# --- (f) lifetimes -------------------------------------------------------------------------

def test_use_after_close_raises_closed_error(ctx: Context, model: Model, lora_q_v: Path) -> None:
    lora = LoraAdapter(model, lora_q_v)
    lora.close()
    lora.close()  # idempotent
    assert lora.closed
    with pytest.raises(ClosedError, match="LoRA adapter is closed"):
        lora.metadata  # noqa: B018
    with pytest.raises(ClosedError, match="LoRA adapter is closed"):
        lora.alora_invocation_tokens  # noqa: B018
    with pytest.raises(ClosedError, match="LoRA adapter is closed"):
        set_adapters(ctx, [(lora, 1.0)])
    assert lora.path == lora_q_v  # plain Python data stays readable


def test_closing_an_adapter_in_use_takes_it_off_the_context(ctx: Context, model: Model, lora_q_v: Path,
                                                            lora_ffn: Path, prompt: list[int]) -> None:
    base = logits_of(ctx, prompt)
    qv, ffn = LoraAdapter(model, lora_q_v), LoraAdapter(model, lora_ffn)
    set_adapters(ctx, [(ffn, 1.0)])
    only_ffn = logits_of(ctx, prompt)
    set_adapters(ctx, [(qv, 1.0), (ffn, 1.0)])
    qv.close()  # llama.cpp would read freed weights at the next decode, were it still set
    assert np.array_equal(logits_of(ctx, prompt), only_ffn)
    ffn.close()
    assert np.array_equal(logits_of(ctx, prompt), base)
    set_adapters(ctx, [])


def test_setting_adapters_on_a_closed_context_raises(model: Model, lora_q_v: Path) -> None:
    c = Context(model, ContextParams(n_ctx=64))
    c.close()
    with LoraAdapter(model, lora_q_v) as lora, pytest.raises(ClosedError, match="context is closed"):
        set_adapters(c, [(lora, 1.0)])


def test_closing_the_model_closes_its_adapters_and_contexts(base_path: Path, lora_q_v: Path,
                                                            prompt: list[int]) -> None:
    m = Model(base_path)
    c = Context(m, ContextParams(n_ctx=64))
    lora = LoraAdapter(m, lora_q_v)
    set_adapters(c, [(lora, 1.0)])
    logits_of(c, prompt)
    m.close()
    assert lora.closed and c.closed
    with pytest.raises(ClosedError):
        LoraAdapter(m, lora_q_v)


def test_the_context_keeps_its_adapters_alive(ctx: Context, model: Model, lora_q_v: Path,
                                              prompt: list[int]) -> None:
    set_adapters(ctx, [(LoraAdapter(model, lora_q_v), 1.0)])  # no other reference to the adapter
    gc.collect()
    adapted = logits_of(ctx, prompt)  # would read freed weights if the adapter had been freed
    set_adapters(ctx, [(LoraAdapter(model, lora_q_v), 1.0)])
    gc.collect()
    assert np.array_equal(logits_of(ctx, prompt), adapted)
    set_adapters(ctx, [])


# --- (g) metadata --------------------------------------------------------------------------

def test_metadata_and_path(model: Model, lora_q_v: Path) -> None:
    with LoraAdapter(model, lora_q_v) as lora:
        meta = lora.metadata
        assert meta["adapter.type"] == "lora"
        assert meta["general.type"] == "adapter"
        assert meta["general.architecture"] == "llama"
        assert float(meta["adapter.lora.alpha"]) == 4.0
        assert lora.path == lora_q_v
        assert lora.alora_invocation_tokens == []
        assert "q_v.gguf" in repr(lora)


def test_alora_invocation_tokens(model: Model, lora_dir: Path) -> None:
    path = write_tiny_lora(lora_dir / "alora.gguf", BASE, invocation_tokens=[306, 626, 263])
    with LoraAdapter(model, path) as lora:
        assert lora.alora_invocation_tokens == [306, 626, 263]
        assert "adapter.alora.invocation_tokens" not in lora.metadata  # arrays are left out


# --- (e) bad files, each loaded in a child interpreter --------------------------------------

TIMEOUT = 60
CHILD_ENV = {**os.environ, "GGML_NO_BACKTRACE": "1"}  # ggml would start gdb on an abort
CHILD = r'''
import json, sys
from llama_binding.core import Batch, Context, ContextParams, Model, Vocab
from llama_binding.core.adapter import LoraAdapter, set_adapters

model = Model(sys.argv[1])
try:
    lora = LoraAdapter(model, sys.argv[2])
    # it loaded: use it, so that an adapter that only crashes at decode shows here too
    ctx = Context(model, ContextParams(n_ctx=64))
    set_adapters(ctx, [(lora, 1.0)])
    tokens = Vocab(model).tokenize("hello")
    batch = Batch(len(tokens))
    batch.add_sequence(tokens, 0)
    ctx.decode(batch)
    out = {"name": "OK", "mro": [], "message": ""}
except Exception as e:
    out = {"name": type(e).__name__, "mro": [c.__name__ for c in type(e).__mro__], "message": str(e)}
print("@@" + json.dumps(out), flush=True)
'''


def load_in_child(base: Path, adapter: Path) -> dict[str, Any]:
    """Load ``adapter`` for ``base`` (and decode with it) in a child interpreter; return what
    it raised, failing the test if the child died."""
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, str(base), str(adapter)], capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, env=CHILD_ENV)
    except subprocess.TimeoutExpired:
        pytest.fail(f"loading {adapter.name} hung (killed after {TIMEOUT} s)", pytrace=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("@@")]
    if proc.returncode != 0 or not lines:
        how = (f"was killed by {signal.Signals(-proc.returncode).name}" if proc.returncode < 0
               else f"exited with {proc.returncode}")
        pytest.fail(f"the child interpreter {how} loading {adapter.name}; its stderr ends with:\n"
                    f"{proc.stderr[-3000:]}", pytrace=False)
    result: dict[str, Any] = json.loads(lines[-1][2:])
    return result


def write_adapter(path: Path, tensors: dict[str, npt.NDArray[Any]],
                  kv: dict[str, tuple[Any, Any]] | None = None, *, header: bool = True) -> Path:
    """A hand-made adapter file: the usual header (unless ``header`` is false), then ``kv``
    (key -> (value, GGUFValueType)) and ``tensors`` (numpy shapes, reversed in ggml)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    if header:
        writer.add_type(gguf.GGUFType.ADAPTER)
        writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
        writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, 4.0)
    for key, (value, vtype) in (kv or {}).items():
        writer.add_key_value(key, value, vtype)
    for name, array in tensors.items():
        writer.add_tensor(name, array)
    return finish_gguf(writer, path, path)


def _f32(*shape: int) -> npt.NDArray[np.float32]:
    return (np.random.default_rng(0).standard_normal(shape) * 0.1).astype(np.float32)


def _q_pair(a: npt.NDArray[Any], b: npt.NDArray[Any]) -> dict[str, npt.NDArray[Any]]:
    return {"blk.0.attn_q.weight.lora_a": a, "blk.0.attn_q.weight.lora_b": b}


def _bad_files(folder: Path, base_path: Path) -> dict[str, Path]:
    import gguf

    T = gguf.GGUFValueType
    n = BASE.n_embd
    text = folder / "notes.gguf"
    text.write_text("hello, I am not a LoRA adapter\n")
    return {
        "missing": folder / "missing.gguf",
        "directory": folder,
        "text": text,
        "base-model": base_path,
        "other-shape": write_tiny_lora(folder / "n_embd32.gguf", TinySpec(n_embd=32)),
        "other-arch": write_tiny_lora(folder / "gpt2.gguf", BASE, architecture="gpt2"),
        "half-pair": write_adapter(folder / "half.gguf", {"blk.0.attn_q.weight.lora_a": _f32(4, n)}),
        "no-such-weight": write_adapter(folder / "nosuch.gguf", {"blk.9.attn_q.weight.lora_a": _f32(4, n),
                                                                 "blk.9.attn_q.weight.lora_b": _f32(n, 4)}),
        "truncated": _truncated(folder / "truncated.gguf", write_tiny_lora(folder / "whole.gguf", BASE)),
        # llama.cpp aborts or segfaults on these; LoraAdapter refuses them first
        "general.type-int": write_adapter(folder / "type_int.gguf", _q_pair(_f32(4, n), _f32(n, 4)),
                                          {"general.type": (7, T.UINT32)}, header=False),
        "alpha-f64": write_adapter(folder / "alpha_f64.gguf", _q_pair(_f32(4, n), _f32(n, 4)),
                                   {"adapter.lora.alpha": (4.0, T.FLOAT64),
                                    "general.type": ("adapter", T.STRING),
                                    "adapter.type": ("lora", T.STRING)}, header=False),
        "int-tensors": write_adapter(folder / "i32.gguf", _q_pair(np.ones((4, n), np.int32), _f32(n, 4))),
        "3d-pair": write_adapter(folder / "three_d.gguf", _q_pair(_f32(2, 4, n), _f32(2, n, 4))),
        "embd-rank-mismatch": write_adapter(folder / "embd_rank.gguf", {
            "token_embd.weight.lora_a": _f32(32000, 4), "token_embd.weight.lora_b": _f32(n, 8)}),
        "embd-tied": write_tiny_lora(folder / "embd_tied.gguf", BASE, targets=("token_embd",)),
    }


def _truncated(path: Path, whole: Path) -> Path:
    data = whole.read_bytes()
    path.write_bytes(data[: len(data) - 1000])
    return path


# label -> fragments the ModelLoadError's message must hold (case-insensitive)
BAD_FILES: dict[str, tuple[str, ...]] = {
    "missing": ("not found", "missing.gguf"),
    "directory": ("directory",),
    "text": ("not a gguf", "notes.gguf"),
    "base-model": ("not a lora adapter", "general.type"),
    "other-shape": ("incorrect shape", "n_embd32.gguf"),
    "other-arch": ("arch", "gpt2.gguf"),
    "half-pair": ("missing one component", "half.gguf"),
    "no-such-weight": ("does not exist in base model",),
    "truncated": ("truncated.gguf",),
    "general.type-int": ("general.type", "u32"),
    "alpha-f64": ("adapter.lora.alpha", "f64"),
    "int-tensors": ("i32",),
    "3d-pair": ("blk.0.attn_q.weight", "dimensions"),
    "embd-rank-mismatch": ("token_embd.weight", "rank"),
    "embd-tied": ("token_embd.weight", "tied"),
}


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory: pytest.TempPathFactory, base_path: Path) -> dict[str, Path]:
    return _bad_files(tmp_path_factory.mktemp("bad-lora"), base_path)


@pytest.mark.parametrize("label", list(BAD_FILES))
def test_bad_adapter_file_raises_model_load_error(bad_files: dict[str, Path], base_path: Path,
                                                  label: str) -> None:
    path = bad_files[label]
    outcome = load_in_child(base_path, path)
    if outcome["name"] == "OK":
        pytest.fail(f"{label}: expected ModelLoadError, but the adapter loaded and decoded", pytrace=False)
    assert outcome["name"] == "ModelLoadError", outcome
    assert "OSError" in outcome["mro"]
    message = outcome["message"]
    assert str(path) in message, f"the message does not name the file: {message}"
    missing = [f for f in BAD_FILES[label] if f.lower() not in message.lower()]
    assert not missing, f"the message does not name {missing}: {message}"


def test_a_good_adapter_loads_and_decodes_in_a_child(base_path: Path, lora_q_v: Path) -> None:
    # the control of the test above: its child reports OK for a good file
    assert load_in_child(base_path, lora_q_v)["name"] == "OK"


def test_paths_that_are_no_adapter_file_are_refused_in_process(model: Model, tmp_path: Path) -> None:
    # checked in Python before llama.cpp sees them, so safe to try without a child
    text = tmp_path / "text.gguf"
    text.write_text("not an adapter")
    for path, fragment in [(tmp_path / "missing.gguf", "not found"), (tmp_path, "directory"),
                           (text, "not a GGUF file")]:
        with pytest.raises(ModelLoadError, match=fragment):
            LoraAdapter(model, path)


def test_bad_path_types_raise_type_error(model: Model) -> None:
    with pytest.raises(TypeError, match="path"):
        LoraAdapter(model, 42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Model"):
        LoraAdapter("model.gguf", "lora.gguf")  # type: ignore[arg-type]
