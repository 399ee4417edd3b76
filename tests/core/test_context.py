"""The native per-token steps of :class:`Context` (native/step.c)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llama_binding.core import Batch, Context, ContextParams, Model, Sampler, SamplerChain, Vocab


def test_argmax_decode_picks_llama_cpps_greedy_token(stories260k: Path) -> None:
    """The native plain-greedy step: the first maximum (as llama.cpp's greedy sampler),
    NaN never wins, the tail after the last SIMD block counts, and decode_next decodes."""
    model = Model(stories260k)
    ctx = Context(model, ContextParams(n_ctx=64))
    vocab = Vocab(model)
    batch = Batch(8)
    batch.add(vocab.bos(), 0, (0,), True)
    ctx.decode(batch)
    logits = ctx.logits(-1)
    greedy = SamplerChain([Sampler.greedy()])
    assert ctx.argmax_decode(vocab, batch, 1, 0, decode_next=False) == (greedy.sample(ctx, -1), False)
    n = logits.size
    cases = {  # logits written in place -> the expected token
        "tie": ({70: 5.0, n - 3: 5.0}, 70),
        "tail": ({n - 1: 1.0}, n - 1),
        "nan": ({i: float("nan") for i in range(0, n, 2)} | {3: 0.0}, 3),
    }
    for name, (values, expected) in cases.items():
        logits[:] = -np.inf
        for i, v in values.items():
            logits[i] = v
        assert ctx.argmax_decode(vocab, batch, 1, 0, decode_next=False)[0] == expected, name
    logits[:] = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    expected = int(logits.argmax())
    tok, decoded = ctx.argmax_decode(vocab, batch, 1, 0)  # the decode overwrites the logits
    assert tok == expected and decoded and ctx.seq_pos_max(0) == 1


def test_a_pool_for_single_token_decodes_and_one_for_batches(stories260k: Path) -> None:
    """One thread a token and four a batch: two pools, each as large as its graphs (one pool
    of four would wake three idle workers on every token); set_threads grows them; decodes
    give the same tokens whatever the pools."""
    from llama_binding.core.threadpool import ContextPools

    m = Model(stories260k)
    v = Vocab(m)
    prompt = v.tokenize("Once upon a time", add_special=True)
    got = []
    for threads in ((1, 4), (2, 2)):
        ctx = Context(m, ContextParams(n_ctx=128, n_threads=threads[0], n_threads_batch=threads[1]))
        pools = ContextPools()
        pools.attach(ctx.ptr, *threads)
        assert pools.sizes == threads
        pools.attach(ctx.ptr, 1, 1)  # fewer: the pools attached already serve
        assert pools.sizes == threads
        ctx.set_threads(3, 4)  # (the context's own pools grow: decodes still run)
        pools.attach(ctx.ptr, 3, 4)
        assert pools.sizes == (3, 4)
        batch = Batch(len(prompt))
        batch.add_sequence(prompt, 0, 0)
        ctx.decode(batch)
        one = Batch(1)
        toks = []
        for i in range(6):
            tok, _ = ctx.argmax_decode(v, one, len(prompt) + i, 0, True)
            toks.append(tok)
        got.append(toks)
        ctx.close()
        pools.free()
    assert got[0] == got[1]
    m.close()
