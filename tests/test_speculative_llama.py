"""Llama(draft_model=...): speculative decoding through the facade - completions, chat,
streaming, stop strings, logprobs, hooks, grammars, stats, and bad draft models.

The exactness of the verify loop itself over many prompts and models is in
tests/generation/test_speculative.py; here SmolLM2 shows the facade wiring on a copy-heavy
prompt, where prompt lookup drafts nearly every token.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from llama_binding import Llama, LlamaDraftModel, LlamaPromptLookupDecoding, SpeculativeStats

PARAGRAPH = (
    "The old lighthouse stood on the northern cliff for nearly two hundred years. Every night its "
    "keeper climbed the narrow spiral stairs, trimmed the wick, and polished the great brass lens."
)
COPY = [{"role": "user", "content": "Repeat this paragraph exactly.\n\n" + PARAGRAPH}]


@pytest.fixture(scope="module")
def plain(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=1024) as llm:
        yield llm


@pytest.fixture(scope="module")
def lookup(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=1024, draft_model=LlamaPromptLookupDecoding(3, 16)) as llm:
        yield llm


def _text(r: Any) -> str:
    return str(r["choices"][0]["message"]["content"])


def test_chat_greedy_equals_plain_and_drafts_are_accepted(plain: Llama, lookup: Llama) -> None:
    want = plain.create_chat_completion(COPY, max_tokens=64, temperature=0.0)
    got = lookup.create_chat_completion(COPY, max_tokens=64, temperature=0.0)
    assert _text(got) == _text(want)
    assert got["usage"] == want["usage"]
    stats = lookup.speculative_stats
    assert isinstance(stats, SpeculativeStats)
    # generated counts the end-of-generation token too, which adds no completion token
    eog = got["choices"][0]["finish_reason"] == "stop"
    assert stats.generated == got["usage"]["completion_tokens"] + eog
    assert stats.acceptance_rate > 0.5 and stats.tokens_per_decode > 2.0


def test_streaming_and_stop_strings(plain: Llama, lookup: Llama) -> None:
    kw: dict[str, Any] = dict(max_tokens=64, temperature=0.0, stop=["spiral"])
    want = plain.create_chat_completion(COPY, **kw)
    parts = [c["choices"][0]["delta"].get("content") or "" for c in
             lookup.create_chat_completion(COPY, stream=True, **kw)]
    assert "".join(parts) == _text(want)
    assert "spiral" not in "".join(parts) and want["choices"][0]["finish_reason"] == "stop"
    # the KV memory holds no unverified draft: the next call reuses the prefix and agrees again
    again = lookup.create_chat_completion(COPY, max_tokens=64, temperature=0.0)
    assert _text(again) == _text(plain.create_chat_completion(COPY, max_tokens=64, temperature=0.0))


def test_logprobs_match_plain(plain: Llama, lookup: Llama) -> None:
    prompt = "Repeat: one two three four five six. Repeat: one two three"
    want = plain.create_completion(prompt, max_tokens=12, temperature=0.0, logprobs=3)
    got = lookup.create_completion(prompt, max_tokens=12, temperature=0.0, logprobs=3)
    assert got["choices"][0]["text"] == want["choices"][0]["text"]
    lw, lg = want["choices"][0]["logprobs"], got["choices"][0]["logprobs"]
    assert lw is not None and lg is not None
    assert lg["tokens"] == lw["tokens"]
    # the verified rows come from a batched decode: equal up to kernel differences
    np.testing.assert_allclose(lg["token_logprobs"], lw["token_logprobs"], atol=0.05)
    assert [list(t) for t in lg["top_logprobs"]] == [list(t) for t in lw["top_logprobs"]]


def test_hooks_see_the_output_history(plain: Llama, lookup: Llama) -> None:
    prompt = "Repeat: one two three four five six. Repeat: one two three"
    seen: dict[str, list[list[int]]] = {"plain": [], "lookup": []}

    def recorder(name: str) -> Any:
        def stop(ids: np.ndarray, logits: np.ndarray) -> bool:
            seen[name].append(ids.tolist())
            return len(seen[name]) >= 6

        return stop

    a = plain.create_completion(prompt, max_tokens=12, temperature=0.0, stopping_criteria=recorder("plain"))
    b = lookup.create_completion(prompt, max_tokens=12, temperature=0.0, stopping_criteria=recorder("lookup"))
    assert seen["lookup"] == seen["plain"]
    assert a["choices"][0]["text"] == b["choices"][0]["text"]
    assert b["choices"][0]["finish_reason"] == "stop"

    def ban_first(ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        logits[int(np.argmax(logits))] = -np.inf  # the second-best token every time
        return logits

    a = plain.create_completion(prompt, max_tokens=8, temperature=0.0, logits_processor=ban_first)
    b = lookup.create_completion(prompt, max_tokens=8, temperature=0.0, logits_processor=ban_first)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]


def test_grammar_and_sampling_work(lookup: Llama) -> None:
    r = lookup.create_completion("Answer yes or no: is the sky blue?", max_tokens=8,
                                 grammar='root ::= "yes" | "no"', temperature=0.0)
    assert r["choices"][0]["text"] in ("yes", "no")
    a = lookup.create_completion("Once upon a time", max_tokens=24, temperature=0.9, seed=7)
    b = lookup.create_completion("Once upon a time", max_tokens=24, temperature=0.9, seed=7)
    assert a["choices"][0]["text"] == b["choices"][0]["text"]  # seeded sampling reproduces
    assert a["usage"]["completion_tokens"] <= 24


def test_max_tokens_is_a_hard_limit(lookup: Llama) -> None:
    for n in (1, 2, 5, 17):
        r = lookup.create_chat_completion(COPY, max_tokens=n, temperature=0.0)
        assert r["usage"]["completion_tokens"] == n


def test_draft_model_drafts_for_the_target(smollm2: Path, plain: Llama) -> None:
    want = plain.create_chat_completion(COPY, max_tokens=40, temperature=0.0)
    with Llama(smollm2, n_ctx=1024) as draft, \
            Llama(smollm2, n_ctx=1024, draft_model=LlamaDraftModel(draft, 6)) as llm:
        got = llm.create_chat_completion(COPY, max_tokens=40, temperature=0.0)
        stats = llm.speculative_stats
        assert stats is not None and stats.drafted > 0
        assert stats.acceptance_rate > 0.9  # the same model: only near-ties can disagree
        assert _text(got) == _text(want)
        # a second call reuses both caches and agrees again
        again = llm.create_chat_completion(COPY, max_tokens=40, temperature=0.0)
        assert _text(again) == _text(want)
        # a plain Llama as draft_model works too
    with Llama(smollm2, n_ctx=1024) as draft, Llama(smollm2, n_ctx=1024, draft_model=draft) as llm:
        assert _text(llm.create_chat_completion(COPY, max_tokens=20, temperature=0.0)) \
            == _text(plain.create_chat_completion(COPY, max_tokens=20, temperature=0.0))


def test_llama_cpp_python_draft_callable(smollm2: Path, plain: Llama) -> None:
    calls: list[int] = []

    def draft(input_ids: np.ndarray, **kwargs: Any) -> np.ndarray:
        calls.append(len(input_ids))
        return np.array([int(input_ids[-1])] * 3, dtype=np.intc)  # a poor guess: repeat the last

    with Llama(smollm2, n_ctx=512, draft_model=draft) as llm:
        got = llm.create_completion("The capital of France is", max_tokens=12, temperature=0.0)
    want = plain.create_completion("The capital of France is", max_tokens=12, temperature=0.0)
    assert got["choices"][0]["text"] == want["choices"][0]["text"]
    assert calls and all(isinstance(n, int) for n in calls)


def test_stats_are_logged_at_debug(lookup: Llama, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="llama_binding"):
        lookup.create_chat_completion(COPY, max_tokens=24, temperature=0.0)
    assert any("speculative:" in r.getMessage() and "accepted" in r.getMessage() for r in caplog.records)


def test_bad_draft_models(smollm2: Path, stories260k: Path) -> None:
    with Llama(stories260k, n_ctx=128) as other:
        with pytest.raises(ValueError, match="vocabulary"):
            Llama(smollm2, n_ctx=256, draft_model=other)
    with pytest.raises(TypeError, match="draft_model"):
        Llama(smollm2, n_ctx=256, draft_model=42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Llama"):
        LlamaDraftModel("small.gguf")  # type: ignore[arg-type]

    def broken(input_ids: np.ndarray, **kwargs: Any) -> object:
        return object()

    with Llama(smollm2, n_ctx=256, draft_model=broken) as llm:
        with pytest.raises(TypeError, match="token ids"):
            llm.create_completion("Hello", max_tokens=4, temperature=0.0)
        assert llm.n_tokens == len(llm.tokenize(b"Hello"))  # the prompt; nothing half-decoded

    def out_of_vocab(input_ids: np.ndarray, **kwargs: Any) -> np.ndarray:
        return np.array([10**9], dtype=np.int64)

    with Llama(smollm2, n_ctx=256, draft_model=out_of_vocab) as llm:
        with pytest.raises(ValueError, match="vocabulary"):
            llm.create_completion("Hello", max_tokens=4, temperature=0.0)


def test_generate_speculates_too(plain: Llama, lookup: Llama) -> None:
    toks = plain.tokenize(b"Repeat: alpha beta gamma delta. Repeat: alpha beta")
    want = list(itertools.islice(plain.generate(toks, temperature=0.0), 10))
    got = list(itertools.islice(lookup.generate(toks, temperature=0.0), 10))
    assert got == want
    stats = lookup.speculative_stats
    assert stats is not None and stats.generated >= 10


def test_greedy_with_a_logit_bias_equals_plain(plain: Llama, lookup: Llama) -> None:
    """Each draft row is checked with the biased argmax (SamplerChain.greedy_bias)."""
    eog = [t for t in range(plain.n_vocab()) if plain.engine.vocab.is_eog(t)]
    top = plain.tokenize(b" spiral", add_bos=False)[0]
    bias = {**{t: -math.inf for t in eog}, top: 2.0}
    kw: dict[str, Any] = dict(max_tokens=48, temperature=0.0, logit_bias=bias)
    want = plain.create_chat_completion(COPY, **kw)
    got = lookup.create_chat_completion(COPY, **kw)
    assert _text(got) == _text(want) and got["usage"] == want["usage"]
    assert want["choices"][0]["finish_reason"] == "length"  # every end token banned
    assert lookup.speculative_stats is not None and lookup.speculative_stats.accepted > 0
