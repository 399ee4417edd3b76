"""Llama features beyond plain completion: infill, Python hooks, eval/sample, backend
sampling on the CPU backend, the loading progress callback."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llama_binding import Llama
from llama_binding._progress import TerminalBar, progress_callback
from llama_binding.errors import ModelLoadError


@pytest.fixture(scope="module")
def llm(stories260k: Path) -> Llama:
    with Llama(stories260k, n_ctx=256) as model:
        yield model


def test_infill_prompt_layout(tiny_model: Callable[..., Path]) -> None:
    path = tiny_model(vocab="starcoder", n_embd=32, n_head=2, n_head_kv=1, n_ff=64)
    seen: list[list[int]] = []

    def record(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        seen.append(ids.tolist())
        return logits

    with Llama(path, n_ctx=128) as llm:
        out = llm.create_completion("def add(a, b):", suffix="    return c\n", max_tokens=3,
                                    temperature=0.0, logits_processor=[record])
        pre, suf, mid = 1, 3, 2  # StarCoder's <fim_prefix>, <fim_suffix>, <fim_middle>
        head = llm.tokenize(b"def add(a, b):", add_bos=False)
        tail = llm.tokenize(b"    return c\n", add_bos=False)
    assert seen[0] == [pre, *head, suf, *tail, mid]
    assert out["usage"]["prompt_tokens"] == len(seen[0])


def test_infill_without_fim_tokens_is_refused(llm: Llama) -> None:
    with pytest.raises(ValueError, match="FIM"):
        llm.create_completion("Once", suffix="end")


def test_logits_processor_steers_every_token(llm: Llama) -> None:
    target = llm.tokenize(b" dog", add_bos=False)[-1]
    calls = []

    def only_dog(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        calls.append(len(ids))
        out = np.full_like(logits, -np.inf)
        out[target] = 0.0
        return out

    out = llm.create_completion("Once upon a time", max_tokens=4, temperature=0.8, seed=1,
                                logits_processor=only_dog)
    assert out["choices"][0]["text"] == llm.detokenize([target] * 4).decode()
    assert calls == [calls[0] + i for i in range(4)]  # ids grow by one token per step


def test_stopping_criteria_end_with_stop(llm: Llama) -> None:
    prompt_len = len(llm.tokenize(b"Once upon a time"))
    out = llm.create_completion("Once upon a time", max_tokens=20, temperature=0.0,
                                stopping_criteria=[lambda ids, logits: len(ids) >= prompt_len + 3])
    assert out["choices"][0]["finish_reason"] == "stop"
    assert out["usage"]["completion_tokens"] == 2  # the third token is dropped
    with pytest.raises(TypeError):
        llm.create_completion("x", stopping_criteria=[1])  # type: ignore[list-item]


def test_eval_scores_and_sample(stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=128, logits_all=True) as llm:
        toks = llm.tokenize(b"Once upon a time")
        llm.eval(toks[:3])
        llm.eval(toks[3:])
        assert llm.n_tokens == len(toks) and llm.input_ids.tolist() == toks
        scores = llm.scores
        assert scores.shape == (len(toks), llm.n_vocab())
        assert llm.sample(temp=0.0) == int(np.argmax(scores[-1]))
    with Llama(stories260k, n_ctx=128) as last_only:
        last_only.eval(toks)
        assert last_only.scores.shape == (1, last_only.n_vocab())
        # a GPU computes one row and many rows with different kernels: close, not equal
        np.testing.assert_allclose(last_only.scores[0], scores[-1], rtol=1e-3, atol=2e-2)


def test_backend_sampling_on_the_cpu_backend_matches(stories260k: Path) -> None:
    # greedy with a penalty: a chain the backend runs (plain greedy is the host's argmax)
    greedy = {"temperature": 0.0, "repeat_penalty": 1.1}
    with Llama(stories260k, n_ctx=256, backend_sampling=False) as cpu, \
            Llama(stories260k, n_ctx=256, backend_sampling=True) as gpu_style:
        for prompt in ("Once upon a time", "The little dog"):
            a = cpu(prompt, max_tokens=24, **greedy)["choices"][0]["text"]
            b = gpu_style(prompt, max_tokens=24, **greedy)["choices"][0]["text"]
            assert a == b
        assert gpu_style.engine.chain_on_backend
        chain = gpu_style.engine.context.attached_sampler(0)
        gpu_style("Once upon a time", max_tokens=4, **greedy)
        assert gpu_style.engine.context.attached_sampler(0) is chain  # reused
        s1 = gpu_style("Once upon a time", max_tokens=16, seed=5)["choices"][0]["text"]
        s2 = gpu_style("Once upon a time", max_tokens=16, seed=5)["choices"][0]["text"]
        assert s1 == s2
        # a call that needs the logits detaches it and still works
        lp = gpu_style("Once upon a time", max_tokens=3, logprobs=1, **greedy)
        assert not gpu_style.engine.chain_on_backend and lp["choices"][0]["logprobs"] is not None
        assert gpu_style("Once upon a time", max_tokens=24, **greedy)["choices"][0]["text"] == \
            cpu("Once upon a time", max_tokens=24, **greedy)["choices"][0]["text"]


def test_plain_greedy_is_the_hosts_argmax(stories260k: Path) -> None:
    """Plain greedy needs no sampler: no chain is attached, and the text equals the one of
    llama.cpp's greedy sampler (reached through a chain with a logit bias that changes
    nothing)."""
    with Llama(stories260k, n_ctx=256, backend_sampling=True) as llm:
        llm("Once upon a time", max_tokens=4, temperature=0.0, repeat_penalty=1.1)
        assert llm.engine.chain_on_backend
        for prompt in ("Once upon a time", "The little dog", "Tom and"):
            plain = llm(prompt, max_tokens=32, temperature=0.0)
            assert not llm.engine.chain_on_backend and llm.engine.context.attached_sampler(0) is None
            chained = llm(prompt, max_tokens=32, temperature=0.0, logit_bias={5: 0.0})
            assert plain["choices"][0]["text"] == chained["choices"][0]["text"]
            assert plain["usage"] == chained["usage"]
        assert list(llm.generate(llm.tokenize(b"Once"), max_tokens=8, temperature=0.0)) == \
            list(llm.generate(llm.tokenize(b"Once"), max_tokens=8, temperature=0.0, logit_bias={5: 0.0}))


def test_closing_an_attached_chain_detaches_it(stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=64, backend_sampling=True) as llm:
        llm("Once", max_tokens=2, temperature=0.0, repeat_penalty=1.1)
        ctx = llm.engine.context
        chain = ctx.attached_sampler(0)
        assert chain is not None and chain.attached
        chain.close()
        assert ctx.attached_sampler(0) is None
        out = llm("Once", max_tokens=2, temperature=0.0, repeat_penalty=1.1)
        assert out["usage"]["completion_tokens"] == 2


def test_progress_callback_and_cancel(stories260k: Path) -> None:
    seen: list[float] = []
    Llama(stories260k, n_ctx=64, progress=lambda v: seen.append(v)).close()
    assert seen and seen[-1] == pytest.approx(1.0) and seen == sorted(seen)
    with pytest.raises(ModelLoadError, match="cancelled"):
        Llama(stories260k, n_ctx=64, progress=lambda v: False)
    with pytest.raises(TypeError):
        Llama(stories260k, n_ctx=64, progress="yes")  # type: ignore[arg-type]


def test_terminal_bar() -> None:
    buf = io.StringIO()
    bar = TerminalBar("loading m.gguf", buf, width=10)
    for v in (0.0, 0.5, 1.0):
        bar(v)
        bar._drawn_at = 0.0  # no rate limit in the test
    text = buf.getvalue()
    assert "[          ]   0%" in text and "[#####     ]  50%" in text and text.endswith("100%\n")
    assert progress_callback(False, "x") is None and progress_callback(None, "x") is None


def test_progress_true_draws_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Stream(io.StringIO):
        def __init__(self, tty: bool) -> None:
            super().__init__()
            self.tty = tty

        def isatty(self) -> bool:
            return self.tty

    monkeypatch.setattr("sys.stderr", Stream(False))
    assert progress_callback(True, "x") is None
    term = Stream(True)
    monkeypatch.setattr("sys.stderr", term)
    bar = progress_callback(True, "loading")
    assert isinstance(bar, TerminalBar)
    bar(1.0)
    assert term.getvalue().endswith("100%\n")


def test_grammar_object_and_hostile_grammar_string(llm: Llama) -> None:
    from llama_binding import LlamaGrammar, SamplerError

    g = LlamaGrammar.from_string('root ::= "yes" | "no"')
    out = llm("Once upon a time", max_tokens=8, grammar=g, seed=3)
    assert out["choices"][0]["text"] in ("yes", "no")
    with pytest.raises(SamplerError):  # llama.cpp itself would loop for ever on this one
        llm("Once upon a time", max_tokens=2, grammar='root ::= "a"{3,1}')
    with pytest.raises(TypeError):
        llm("Once upon a time", max_tokens=2, grammar=5)  # type: ignore[arg-type]
