"""The Llama facade on real models: llama-cpp-python's names, OpenAI shapes, bad inputs."""

from __future__ import annotations

import inspect
import pickle
import warnings
from dataclasses import fields
from pathlib import Path

import pytest

from llama_binding import _params
from llama_binding.core import ContextParams, ModelParams
from llama_binding.errors import ClosedError, ContextOverflowError, SamplerError
from llama_binding.llama import Llama

STORY = ", there was a little girl named Lily. She loved to play outside in the park."


@pytest.fixture(scope="module")
def llm(stories260k: Path) -> Llama:
    with Llama(stories260k, n_ctx=256) as model:
        yield model


def test_signature_table_and_dataclasses_agree() -> None:
    sig = inspect.signature(Llama.__init__)
    names = {n for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}
    mapped = set(_params.MODEL_FIELDS) | set(_params.CONTEXT_FIELDS) | set(_params.CONVERTED)
    assert names == mapped
    assert set(_params.MODEL_FIELDS.values()) <= {f.name for f in fields(ModelParams)}
    assert set(_params.CONTEXT_FIELDS.values()) <= {f.name for f in fields(ContextParams)}
    assert not names & _params.IGNORED


def _given(**kw: object) -> dict[str, object]:
    """Llama's keywords at their defaults, with ``kw`` over them."""
    sig = inspect.signature(Llama.__init__)
    return {**{n: p.default for n, p in sig.parameters.items() if p.kind is p.KEYWORD_ONLY}, **kw}


@pytest.mark.parametrize("n_threads", [None, 0, -1])
def test_generation_threads_default_to_one_when_every_layer_is_on_a_gpu(n_threads: object) -> None:
    on_gpu = _params.context_params(_given(n_threads=n_threads), 4096, all_on_gpu=True)
    assert on_gpu.n_threads == 1 and on_gpu.n_threads_batch is None  # prompts: the physical cores
    assert _params.context_params(_given(n_threads=n_threads), 4096).n_threads == n_threads
    assert _params.context_params(_given(n_threads=3), 4096, all_on_gpu=True).n_threads == 3


def test_the_context_gets_those_generation_threads(llm: Llama) -> None:
    from llama_binding.core.context import physical_cores

    all_on_gpu = _params.offload(-1, llm.engine.model.n_layer)[1]  # (False on a CPU machine)
    assert llm.engine.context.n_threads == (1 if all_on_gpu else physical_cores())


def test_greedy_completion_and_openai_shape(llm: Llama) -> None:
    out = llm.create_completion("Once upon a time", max_tokens=20, temperature=0.0)
    assert out["object"] == "text_completion" and out["id"].startswith("cmpl-")
    choice = out["choices"][0]
    assert STORY.startswith(choice["text"]) and len(choice["text"]) > 20
    assert choice["finish_reason"] == "length" and choice["index"] == 0
    usage = out["usage"]
    assert usage["completion_tokens"] == 20
    assert usage["total_tokens"] == usage["prompt_tokens"] + 20


def test_stream_equals_non_stream(llm: Llama) -> None:
    full = llm("Once upon a time", max_tokens=30, temperature=0.0)["choices"][0]["text"]
    chunks = list(llm("Once upon a time", max_tokens=30, temperature=0.0, stream=True))
    assert "".join(c["choices"][0]["text"] for c in chunks) == full
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


def test_stop_string_split_across_tokens(llm: Llama) -> None:
    out = llm("Once upon a time", max_tokens=40, temperature=0.0, stop=["le gi", "zzz"])
    assert out["choices"][0]["text"] == ", there was a litt"
    assert out["choices"][0]["finish_reason"] == "stop"


def test_echo_and_token_prompt(llm: Llama) -> None:
    tokens = llm.tokenize(b"Once upon a time")
    out = llm.create_completion(tokens, max_tokens=5, temperature=0.0, echo=True)
    assert out["choices"][0]["text"].startswith(" Once upon a time, there")


def test_max_tokens_none_runs_to_the_context_end(stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=64) as small:
        no_eos = {small.token_eos(): -1e9}
        out = small("Once upon a time", max_tokens=None, temperature=0.0, logit_bias=no_eos)
        assert out["choices"][0]["finish_reason"] == "length"
        assert out["usage"]["total_tokens"] == small.n_ctx() + 1


def test_seed_reproduces(llm: Llama) -> None:
    a = llm("Once upon a time", max_tokens=16, seed=11)["choices"][0]["text"]
    b = llm("Once upon a time", max_tokens=16, seed=11)["choices"][0]["text"]
    c = llm("Once upon a time", max_tokens=16, seed=12)["choices"][0]["text"]
    assert a == b and a != c


def test_bad_inputs_raise_clearly(llm: Llama) -> None:
    with pytest.raises(ContextOverflowError):
        llm.create_completion([1] * 10_000, max_tokens=1)
    with pytest.raises(SamplerError):
        llm.create_completion("x", grammar="root ::= missing-rule")
    with pytest.raises(ValueError):
        llm.create_completion([10**7], max_tokens=1)
    with pytest.raises(TypeError):
        llm.create_completion(b"bytes prompt")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        llm.create_completion("x", temperature=float("nan"))


def test_unknown_and_ignored_keywords(stories260k: Path) -> None:
    """Unknown keywords are accepted as llama-cpp-python accepts them (its ``**kwargs``),
    with a warning that names them (tests/test_compat.py has the other methods)."""
    with pytest.warns(UserWarning, match="'n_ctxx' \\(did you mean 'n_ctx'\\?\\)"):
        Llama(stories260k, n_ctxx=128).close()
    with pytest.warns(DeprecationWarning, match="mul_mat_q"):
        Llama(stories260k, n_ctx=64, mul_mat_q=True).close()


def test_pickle_recreates_from_parameters(llm: Llama) -> None:
    clone = pickle.loads(pickle.dumps(llm))
    try:
        assert clone.n_ctx() == llm.n_ctx()
        a = clone("Once upon a time", max_tokens=8, temperature=0.0)["choices"][0]["text"]
        assert a == llm("Once upon a time", max_tokens=8, temperature=0.0)["choices"][0]["text"]
    finally:
        clone.close()


def test_call_while_a_stream_is_open_in_the_same_thread(llm: Llama) -> None:
    """A paused stream holds nothing: the call runs, and the stream resumes exactly
    (tests/test_threads.py has the other cases)."""
    want = llm("Once upon a time", max_tokens=8, temperature=0.0)["choices"][0]["text"]
    it = llm("Once upon a time", max_tokens=8, temperature=0.0, stream=True)
    parts = [next(it)["choices"][0]["text"]]  # type: ignore[call-overload]
    assert llm("again", max_tokens=1)["usage"]["completion_tokens"] == 1
    parts += [c["choices"][0]["text"] for c in it]  # type: ignore[index]
    assert "".join(parts) == want


def test_call_after_close(stories260k: Path) -> None:
    model = Llama(stories260k, n_ctx=64)
    model.close()
    with pytest.raises(ClosedError):
        model("x", max_tokens=1)


def test_prefix_reuse_between_calls(llm: Llama) -> None:
    llm("Once upon a time, there was", max_tokens=2, temperature=0.0)
    kept = llm.n_tokens
    llm.engine.context.perf_reset()
    llm("Once upon a time, there was a dog", max_tokens=1, temperature=0.0)
    assert 0 < llm.engine.context.perf()["n_p_eval"] < kept


def test_quiet_by_default(stories260k: Path, capfd: pytest.CaptureFixture[str]) -> None:
    with warnings.catch_warnings():
        Llama(stories260k, n_ctx=64).close()
    assert capfd.readouterr().err == ""


def test_native_debug_lines_stay_in_c_unless_debug_logging_is_on(
        stories260k: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's DEBUG lines never reach the Python callback while the logger does not
    want them (our C filter drops them: some arrive on every decode); with DEBUG logging
    on, a new Llama gets them; warnings always arrive (a failed call quotes them)."""
    import logging

    from llama_binding import _log

    levels: list[int] = []
    emit = _log._emit

    def spy(level: int, text: str) -> None:
        levels.append(level)
        emit(level, text)

    monkeypatch.setattr(_log, "_emit", spy)
    native = logging.getLogger("llama_binding.native")
    try:
        with Llama(stories260k, n_ctx=64) as llm:  # stories260K's header draws two warnings
            llm("Once", max_tokens=2, temperature=0.0)
        assert 3 in levels and not {1, 2} & set(levels)  # ggml levels: DEBUG 1, INFO 2, WARN 3
        levels.clear()
        native.setLevel(logging.DEBUG)
        with Llama(stories260k, n_ctx=64) as llm:
            llm("Once", max_tokens=2, temperature=0.0)
        assert 1 in levels
    finally:
        native.setLevel(logging.NOTSET)
        _log.sync_level()


def test_metadata_has_every_key_with_arrays(smollm2: Path) -> None:
    import numpy as np

    with Llama(smollm2, vocab_only=True) as llm:
        meta = llm.metadata
    assert meta["general.architecture"] == "llama"
    assert meta["llama.context_length"] == 8192
    assert meta["tokenizer.ggml.add_bos_token"] is False
    tokens = meta["tokenizer.ggml.tokens"]
    assert isinstance(tokens, list) and len(tokens) == 49152 and tokens[1] == "<|im_start|>"
    types = meta["tokenizer.ggml.token_type"]
    assert isinstance(types, np.ndarray) and types.shape == (49152,)
    assert meta["tokenizer.chat_template"].startswith("{% for message in messages %}")


def test_cancelled_prompt_leaves_llama_consistent(tiny_spm: Path) -> None:
    import threading

    from llama_binding.errors import DecodeAbortedError

    with Llama(tiny_spm, n_ctx=4096, n_gpu_layers=0) as llm:
        prompt = [1] + [(i % 1000) + 100 for i in range(4000)]
        timer = threading.Timer(0.05, llm.cancel)
        timer.start()
        with pytest.raises(DecodeAbortedError):
            llm.create_completion(prompt, max_tokens=1)
        timer.join()
        assert llm.engine.context.seq_pos_max(0) == llm.n_tokens - 1  # memory and bookkeeping agree
        out = llm.create_completion(prompt[:50], max_tokens=2, temperature=0.0)
        assert out["usage"]["completion_tokens"] == 2


def test_two_threads_are_serialized(llm: Llama) -> None:
    import threading

    expected = llm("Once upon a time", max_tokens=12, temperature=0.0)["choices"][0]["text"]
    results: list[str] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(3):
                results.append(llm("Once upon a time", max_tokens=12, temperature=0.0)["choices"][0]["text"])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and results == [expected] * 6
