"""Log-probabilities: the math without a model, and consistency with sampled tokens."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from llama_binding.generation.logprobs import log_softmax_at
from llama_binding.llama import Llama


def test_log_softmax_matches_the_definition() -> None:
    rng = np.random.default_rng(0)
    logits = rng.standard_normal(1000).astype(np.float32) * 5
    e = log_softmax_at(logits, 7, 5)
    ref = logits.astype(np.float64) - np.log(np.exp(logits.astype(np.float64)).sum())
    assert e.logprob == pytest.approx(ref[7])
    best = np.argsort(-ref)[:5]
    assert list(e.top) == [int(i) for i in best]
    assert all(e.top[int(i)] == pytest.approx(ref[i]) for i in best)
    assert log_softmax_at(logits, 0, 0).top == {}


def test_large_logits_do_not_overflow() -> None:
    logits = np.array([1e4, 1e4 - 1, -1e4], dtype=np.float32)
    e = log_softmax_at(logits, 0, 2)
    assert math.isfinite(e.logprob) and e.logprob == pytest.approx(-math.log1p(math.exp(-1)))


@pytest.fixture(scope="module")
def llm(smollm2: Path) -> Llama:
    with Llama(smollm2, n_ctx=256) as model:
        yield model


def test_greedy_tokens_are_the_top_alternative(llm: Llama) -> None:
    out = llm("The capital of France is", max_tokens=8, temperature=0.0, logprobs=3)
    lp = out["choices"][0]["logprobs"]
    assert lp is not None
    assert len(lp["tokens"]) == out["usage"]["completion_tokens"] == 8
    assert "".join(lp["tokens"]) == out["choices"][0]["text"]
    for tok, tok_lp, top in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"]):
        assert len(top) == 3 and tok_lp <= 0
        assert max(top.values()) == pytest.approx(tok_lp)  # greedy picks the most likely token
        assert tok in top
    assert lp["text_offset"][0] == 0
    assert lp["text_offset"] == sorted(lp["text_offset"])


def test_sampled_tokens_have_their_own_logprob(llm: Llama) -> None:
    out = llm("Once upon a time", max_tokens=12, temperature=1.0, seed=3, logprobs=2)
    lp = out["choices"][0]["logprobs"]
    assert lp is not None and all(v <= 0 for v in lp["token_logprobs"])
    assert all(max(top.values()) >= v - 1e-6 for top, v in zip(lp["top_logprobs"], lp["token_logprobs"]))


def test_stream_logprobs_equal_non_stream(llm: Llama) -> None:
    full = llm("The capital of France is", max_tokens=8, temperature=0.0, logprobs=1)["choices"][0]
    chunks = list(llm("The capital of France is", max_tokens=8, temperature=0.0, logprobs=1, stream=True))
    toks = [t for c in chunks if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert toks == full["logprobs"]["tokens"]


def test_bad_logprobs_arguments(llm: Llama) -> None:
    with pytest.raises(ValueError):
        llm("x", max_tokens=1, logprobs=-1)
    with pytest.raises(ValueError):
        llm("x", max_tokens=1, logprobs=True)  # type: ignore[arg-type]


def test_echo_logprobs_cover_the_prompt(llm: Llama, smollm2: Path) -> None:
    prompt = "The capital of France is"
    ptoks = llm.tokenize(prompt.encode())
    llm("warm the prefix cache: " + prompt, max_tokens=1)  # prompt logprobs must not reuse it
    out = llm(prompt, max_tokens=4, temperature=0.0, logprobs=2, echo=True)
    choice = out["choices"][0]
    lp = choice["logprobs"]
    assert lp is not None
    assert len(lp["tokens"]) == len(ptoks) + 4
    assert "".join(lp["tokens"]) == choice["text"] and choice["text"].startswith(prompt)
    assert lp["token_logprobs"][0] is None and lp["top_logprobs"][0] is None
    # the prompt's log-probabilities equal those computed from eval() with logits_all
    with Llama(smollm2, n_ctx=256, logits_all=True) as ref:
        ref.eval(ptoks)
        scores = ref.scores.astype(np.float64)
        assert scores.shape == (len(ptoks), ref.n_vocab())
    for i in range(1, len(ptoks)):
        row = scores[i - 1]
        expected = row[ptoks[i]] - (row.max() + np.log(np.exp(row - row.max()).sum()))
        assert lp["token_logprobs"][i] == pytest.approx(expected, abs=2e-3)
    streamed = list(llm(prompt, max_tokens=4, temperature=0.0, logprobs=2, echo=True, stream=True))
    toks = [t for c in streamed if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert toks == lp["tokens"]
