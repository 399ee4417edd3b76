"""Prompt-lookup speculative decoding inside the continuous-batching engine: plain greedy
requests with a drafter give the tokens they give without one, in fewer decodes, and leave
no drafted token in the KV memory past a verify."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from test_batching import EPS_LAST_TOKEN_ALONE, check_equal, single  # (pytest puts this folder on sys.path)

from llama_binding.core import Context, ContextParams, Model, Vocab
from llama_binding.generation.batching import BatchEngine, BatchRequest, Greedy
from llama_binding.generation.drafters import LlamaPromptLookupDecoding

#: prompts whose continuations repeat what they hold (lookup drafts get accepted) and some that do not
TEXTS = [
    "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,", "A B C D A B C D A B C D A B",
    "Repeat after me: the cat sat on the mat. The cat sat on the mat. The cat",
    "The capital of France is", "def fibonacci(n):", "Once upon a time, in a land far away,",
]


SINGLE: dict[tuple[int, ...], tuple[list[int], list[float]]] = {}


@pytest.fixture(scope="module")
def smol(smollm2: Path) -> Iterator[tuple[Model, Vocab]]:
    m = Model(smollm2)
    yield m, Vocab(m)
    m.close()


def run(m: Model, v: Vocab, prompts: list[list[int]], n: int, *, draft: bool, greedy: Greedy = "host",
        unified: bool = True, n_ctx: int = 2048) -> tuple[list[BatchRequest], BatchEngine]:
    # a backend greedy sampler allows this many outputs a sequence (llama.cpp's default: 1)
    ctx = Context(m, ContextParams(n_ctx=n_ctx, n_seq_max=4, kv_unified=unified, n_batch=128,
                                   n_outputs_max_per_seq=7 if draft else None))
    engine = BatchEngine(ctx, v, greedy=greedy)
    reqs = [engine.submit(BatchRequest(p, n, drafter=LlamaPromptLookupDecoding(num_pred_tokens=6) if draft
                                       else None)) for p in prompts]
    while engine.busy:
        engine.step()
        for r in reqs:  # past each verify, only the tokens before the pending one are in memory
            if r.phase == "running":
                assert ctx.seq_pos_max(r.seq_id) == len(r.prompt) + len(r.output) - 2
    # each slot's memory keeps its last request's evaluated tokens, no more (for reuse)
    assert all(ctx.seq_pos_max(s) == len(engine.cached(s)) - 1 for s in range(4))
    engine.close()
    assert all(ctx.seq_pos_max(s) == -1 for s in range(4))
    ctx.close()
    return reqs, engine


@pytest.mark.parametrize(("greedy", "unified"), [("host", True), ("backend", True), ("backend", False)])
def test_drafted_greedy_equals_plain_greedy(smol: tuple[Model, Vocab], greedy: Greedy, unified: bool) -> None:
    """Each drafted sequence gives its prompt's single-sequence greedy tokens, up to near
    ties (a verify evaluates tokens in other batches than plain decoding does, which moves
    logits as batching itself does: tests/generation/test_batching.py), in fewer decodes."""
    m, v = smol
    prompts = [v.tokenize(t) for t in TEXTS]
    _, plain_engine = run(m, v, prompts, 40, draft=False, greedy=greedy, unified=unified)
    drafted, engine = run(m, v, prompts, 40, draft=True, greedy=greedy, unified=unified)
    ties: list[float] = []
    for p, r in zip(prompts, drafted):
        if tuple(p) not in SINGLE:  # the reference, once for all parameters
            SINGLE[tuple(p)] = single(m, v, p, 40)
        want, gaps = SINGLE[tuple(p)]
        check_equal(r.output, want, gaps, ties, eps=EPS_LAST_TOKEN_ALONE)
    # (an AVX2-only CPU, no AVX-512, gave four: gaps 0.02, 0.36, 0.017, 0.0097, of 480 tokens)
    assert len(ties) <= 4, ties
    assert engine.drafted_tokens > 0 and engine.accepted_tokens > 20
    assert engine.accepted_tokens <= engine.drafted_tokens
    assert engine.steps < plain_engine.steps  # accepted drafts save decodes
    assert engine.generated_tokens == sum(len(r.output) for r in drafted)


def test_a_backend_sampler_allowing_one_output_gets_no_draft(smol: tuple[Model, Vocab]) -> None:
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=512, n_seq_max=2))
    engine = BatchEngine(ctx, v, greedy="backend")
    assert ctx.n_outputs_per_seq == 1 and engine.greedy == "backend"
    r = engine.submit(BatchRequest(v.tokenize(TEXTS[0]), 16, drafter=LlamaPromptLookupDecoding()))
    engine.run()
    assert len(r.output) == 16 and engine.drafted_tokens == 0
    engine.close()
    ctx.close()


def test_limits_hold_with_drafts(smol: tuple[Model, Vocab]) -> None:
    """max_tokens and the sequence's cells bound a draft: the output never runs past them."""
    m, v = smol
    prompt = v.tokenize(TEXTS[0])
    for n in (1, 2, 7):
        (r,), _ = run(m, v, [prompt], n, draft=True)
        assert len(r.output) == n and r.finish_reason == "length"
    # 4 slots of a split 1024-cell context: 256 cells each
    (r,), engine = run(m, v, [prompt], 1000, draft=True, unified=False, n_ctx=1024)
    assert r.finish_reason == "length" and len(r.prompt) + len(r.output) == 257
    assert engine.accepted_tokens > 0
