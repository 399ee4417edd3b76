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
