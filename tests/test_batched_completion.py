"""Llama.create_completion with several prompts or n > 1: one choice each, batched (SmolLM2)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llama_binding import Llama

PROMPTS = ["The capital of France is", "Once upon a time", "def fib(n):", "Water boils at", "1, 2, 3,"]


@pytest.fixture(scope="module")
def llm(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=2048, n_seq_max=4, kv_unified=True) as m:
        yield m


def test_one_choice_per_prompt_equal_to_single_calls(llm: Llama) -> None:
    r = llm.create_completion(PROMPTS, max_tokens=12, temperature=0.0, stop=["\n"])
    assert [c["index"] for c in r["choices"]] == list(range(len(PROMPTS)))  # 5 prompts, 4 slots
    single = [llm(p, max_tokens=12, temperature=0.0, stop=["\n"])["choices"][0] for p in PROMPTS]
    equal = sum(c["text"] == s["text"] for c, s in zip(r["choices"], single))
    assert equal >= len(PROMPTS) - 1  # batched kernels may flip a near-tie (see test_batching.py)
    for c, s in zip(r["choices"], single):
        if c["text"] == s["text"]:
            assert c["finish_reason"] == s["finish_reason"]
    assert r["usage"]["prompt_tokens"] == sum(len(llm.tokenize(p.encode())) for p in PROMPTS)
    # token prompts work the same way
    toks = [llm.tokenize(p.encode()) for p in PROMPTS[:2]]
    r2 = llm.create_completion(toks, max_tokens=12, temperature=0.0, stop=["\n"])
    assert [c["text"] for c in r2["choices"]] == [c["text"] for c in r["choices"][:2]]


def test_n_samples_are_seeded_and_differ(llm: Llama) -> None:
    a = llm.create_completion("Once upon a time", max_tokens=12, temperature=1.0, seed=5, n=3)
    b = llm.create_completion("Once upon a time", max_tokens=12, temperature=1.0, seed=5, n=3)
    texts = [c["text"] for c in a["choices"]]
    assert texts == [c["text"] for c in b["choices"]]
    assert len(set(texts)) == 3
    one = llm.create_completion("Once upon a time", max_tokens=12, temperature=1.0, seed=5)
    assert one["choices"][0]["text"] == texts[0]  # sample 0 uses the seed itself


def test_streaming_gives_every_index_a_finish(llm: Llama) -> None:
    chunks = list(llm.create_completion(PROMPTS[:3], max_tokens=6, temperature=0.0, stream=True))
    finishes = {c["choices"][0]["index"]: c["choices"][0]["finish_reason"] for c in chunks
                if c["choices"][0]["finish_reason"]}
    assert sorted(finishes) == [0, 1, 2]
    assert all(f in ("stop", "length") for f in finishes.values())


def test_refused_options_and_the_llama_stays_usable(llm: Llama) -> None:
    with pytest.raises(ValueError, match="logprobs"):
        llm.create_completion(PROMPTS[:2], logprobs=2)
    with pytest.raises(ValueError, match="n must be"):
        llm.create_completion("Hi", n=0)
    before = llm("The capital of France is", max_tokens=6, temperature=0.0)["choices"][0]["text"]
    llm.create_completion(PROMPTS[:2], max_tokens=4, temperature=0.0)
    assert llm("The capital of France is", max_tokens=6, temperature=0.0)["choices"][0]["text"] == before


def test_backend_greedy_gives_the_host_greedy_choices(llm: Llama, smollm2: Path) -> None:
    """With backend sampling (a GPU's default) the batched call takes each sequence's argmax
    in the decode; the texts are the host argmax's, and the Llama's own sampling still works
    after it (the slots' backend samplers are detached at the end)."""
    want = llm.create_completion(PROMPTS, max_tokens=12, temperature=0.0)
    with Llama(smollm2, n_ctx=2048, n_seq_max=4, kv_unified=True, backend_sampling=True) as b:
        got = b.create_completion(PROMPTS, max_tokens=12, temperature=0.0)
        assert [c["text"] for c in got["choices"]] == [c["text"] for c in want["choices"]]
        assert not any(b.engine.context.attached_sampler(s) for s in range(4))
        again = b(PROMPTS[0], max_tokens=12, temperature=0.0)["choices"][0]["text"]
        assert again == llm(PROMPTS[0], max_tokens=12, temperature=0.0)["choices"][0]["text"]
