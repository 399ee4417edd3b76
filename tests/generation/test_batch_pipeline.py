"""BatchEngine's pipelined steps (``pipeline``: on a GPU, a busy steady step queues the next
decode before its per-request bookkeeping): the same tokens as the plain steps, requests
that end, are cancelled or arrive meanwhile handled, and a queued decode undone cleanly;
both with the wait, picks and next decode in one native call (``fuse``, the default) and
from Python.

On the CPU a queued decode computes at once, so these check the order of the work, which is
what could go wrong: the batches must be the ones the plain steps build."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llama_binding.aio import AsyncLlama
from llama_binding.core import Context, ContextParams, Model, SamplerChain, Vocab
from llama_binding.core.sampler import Sampler
from llama_binding.errors import ClosedError, KVCacheFullError
from llama_binding.generation.batching import BatchEngine, BatchRequest, Greedy
from llama_binding.generation.pick_launch import Picked

TEXTS = [
    "The capital of France is", "Once upon a time, in a land far away,", "def fibonacci(n):",
    "The three primary colors are", "Water boils at", "My favourite food is",
    "In 1969, the first person to walk on the moon was", "import numpy as np\n",
    "The quick brown fox", "Photosynthesis is the process", "1, 2, 3, 4,", "Dear Sir or Madam,",
]


@pytest.fixture(scope="module")
def smol(smollm2: Path) -> Iterator[tuple[Model, Vocab]]:
    m = Model(smollm2)
    yield m, Vocab(m)
    m.close()


def _chain(i: int) -> SamplerChain | None:
    """Every third request plain greedy, the others seeded sampling (some with a top-k)."""
    if i % 3 == 0:
        return None
    head = [Sampler.top_k(40)] if i % 3 == 1 else [Sampler.min_p(0.05)]
    return SamplerChain([*head, Sampler.temp(0.8), Sampler.dist(100 + i)])


def _run(m: Model, v: Vocab, *, pipeline: bool, greedy: Greedy = "host", unified: bool = True,
         n: int = 12, arrivals: Callable[[], bool] | None = None,
         fuse: bool = True) -> tuple[list[BatchRequest], BatchEngine]:
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=n, kv_unified=unified))
    engine = BatchEngine(ctx, v, greedy=greedy, host_threads=2)
    engine.pipeline, engine.arrivals, engine.fuse = pipeline, arrivals, fuse
    reqs = [engine.submit(BatchRequest(v.tokenize(t), max_tokens=6 + 2 * i, chain=_chain(i)))
            for i, t in enumerate(TEXTS[:n])]
    engine.run()
    return reqs, engine


@pytest.mark.parametrize(("greedy", "unified", "fuse"), [
    ("host", True, True), ("backend", True, True), ("backend", False, True), ("host", True, False),
    ("backend", True, False), ("backend", False, False)])
def test_pipelined_steps_give_the_same_tokens(smol: tuple[Model, Vocab], greedy: Greedy,
                                              unified: bool, fuse: bool) -> None:
    """12 requests of different lengths, greedy and seeded sampled: every token as without
    the pipeline, the requests that end dropping out of the queued batches as they do of
    the built ones; most decodes queued (all rows running from the second decode on)."""
    m, v = smol
    want, plain = _run(m, v, pipeline=False, greedy=greedy, unified=unified)
    got, piped = _run(m, v, pipeline=True, greedy=greedy, unified=unified, fuse=fuse)
    assert [r.output for r in got] == [r.output for r in want]
    assert [r.finish_reason for r in got] == ["length"] * 12
    assert [len(r.output) for r in got] == [6 + 2 * i for i in range(12)]
    assert plain.pipelined_steps == 0 and piped.steps == plain.steps
    # requests on their way (a driver's queue not read yet): no step queues its decode
    held, waited = _run(m, v, pipeline=True, greedy=greedy, unified=unified, arrivals=lambda: True, fuse=fuse)
    assert [r.output for r in held] == [r.output for r in want] and waited.pipelined_steps == 0
    waited.close()
    waited.ctx.close()
    # from the second decode on, a step with 8 or more rows queues the next: requests 4..11
    # are still running after 12 tokens (6 + 2i > 12 for i >= 4)
    assert piped.pipelined_steps >= 10
    for e in (plain, piped):  # every cell given back: the memory holds what the slots keep
        assert e.kv_tokens == 0
        e.close()
        e.ctx.close()


@pytest.mark.parametrize("fuse", [True, False])
def test_a_request_ending_on_an_end_token_leaves_the_queued_batch(smol: tuple[Model, Vocab],
                                                                  fuse: bool) -> None:
    """A request whose chain picks the end-of-generation token at once is not in the next
    queued batch; one that ignores it goes on past it; the rest are unchanged."""
    m, v = smol
    eos = v.eos()

    def forced() -> SamplerChain:  # the end token, whatever the logits
        return SamplerChain([Sampler.logit_bias(v.n_tokens, {eos: 100.0}), Sampler.greedy()])

    def run(pipeline: bool) -> tuple[list[BatchRequest], BatchEngine]:
        ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=10, kv_unified=True))
        engine = BatchEngine(ctx, v)
        engine.pipeline, engine.fuse = pipeline, fuse
        reqs = [engine.submit(BatchRequest(v.tokenize(t), 8)) for t in TEXTS[:8]]
        stop = engine.submit(BatchRequest(v.tokenize(TEXTS[8]), 8, forced()))
        past = engine.submit(BatchRequest(v.tokenize(TEXTS[9]), 3, forced(), ignore_eos=True))
        engine.run()
        return [*reqs, stop, past], engine

    want, _ = run(False)
    got, engine = run(True)
    assert [r.output for r in got] == [r.output for r in want]
    assert got[8].output == [eos] and got[8].finish_reason == "stop"
    assert got[9].output == [eos] * 3 and got[9].finish_reason == "length"
    assert engine.pipelined_steps > 0 and engine.kv_tokens == 0
    engine.ctx.close()


@pytest.mark.parametrize("fuse", [True, False])
def test_cancel_and_arrivals_between_pipelined_steps(smol: tuple[Model, Vocab], fuse: bool) -> None:
    """A request cancelled while a decode with its row is queued drops out (its cell goes);
    one cancelled from its own on_token callback too; one submitted meanwhile waits for
    the next built batch and gets its own greedy tokens; then the engine drains idle."""
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=12, kv_unified=True))
    engine = BatchEngine(ctx, v)
    engine.pipeline, engine.fuse = True, fuse
    reqs = [engine.submit(BatchRequest(v.tokenize(t), 20)) for t in TEXTS[:10]]

    def cancel_self(r: BatchRequest, _tok: int) -> None:
        if len(r.output) == 4:
            engine.cancel(r)

    reqs[1].on_token = cancel_self
    for _ in range(3):
        engine.step()
    assert engine._launched
    engine.cancel(reqs[0])
    late = engine.submit(BatchRequest(v.tokenize(TEXTS[11]), 5))
    engine.run()
    assert reqs[0].finish_reason == "cancelled" and len(reqs[0].output) == 3
    assert reqs[1].finish_reason == "cancelled" and len(reqs[1].output) == 4
    assert all(len(r.output) == 20 for r in reqs[2:]) and len(late.output) == 5
    alone = Context(m, ContextParams(n_ctx=2048, n_seq_max=12, kv_unified=True))
    ref = BatchEngine(alone, v)
    want = ref.submit(BatchRequest(v.tokenize(TEXTS[11]), 5))
    ref.run()
    assert late.output == want.output
    assert not engine.busy and engine.kv_tokens == 0
    for c in (ctx, alone):
        c.close()


def test_a_generator_closed_with_a_decode_queued(smol: tuple[Model, Vocab]) -> None:
    """Leaving generate() while a decode is queued waits for it and undoes it: the context's
    memory holds no cell of the cancelled requests, and the engine serves the next ones."""
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=10, kv_unified=True))
    engine = BatchEngine(ctx, v)
    engine.pipeline = True
    prompts = [v.tokenize(t) for t in TEXTS[:9]]
    gen = engine.generate(prompts, max_tokens=30)
    for _ in range(9 * 4):
        next(gen)
    assert engine._launched
    gen.close()
    assert not engine._launched and not engine.busy
    assert all(ctx.seq_pos_max(s) < 0 or engine.cached(s) for s in range(10))
    got = dict.fromkeys(range(9), 0)
    for i, _tok in engine.generate(prompts, max_tokens=5):
        got[i] += 1
    assert got == dict.fromkeys(range(9), 5)
    engine.close()
    ctx.close()


def test_async_llama_with_pipelined_steps(smollm2: Path) -> None:
    """Through AsyncLlama (the server's engine): ten concurrent streams as without the
    pipeline, and a close while streams run ends them cleanly."""

    async def streams(pipeline: bool, close_early: bool = False) -> tuple[list[object], int]:
        llm = AsyncLlama(str(smollm2), n_seq_max=10, n_ctx=2048, verbose=False)
        llm.scheduler.pipeline = pipeline

        async def one(i: int) -> str:
            text = ""
            async for chunk in await llm.acreate_completion(
                    TEXTS[i], max_tokens=16, temperature=0.8 if i % 2 else 0.0, seed=i, stream=True):
                text += chunk["choices"][0]["text"]
            return text

        try:
            if close_early:  # the engine thread stops with a decode queued, mid-stream
                tasks = [asyncio.ensure_future(one(i)) for i in range(10)]
                for _ in range(2000):  # (at most 10 s)
                    if llm.scheduler.pipelined_steps >= 3:
                        break
                    await asyncio.sleep(0.005)
                assert llm.scheduler.pipelined_steps >= 3
                await asyncio.get_running_loop().run_in_executor(None, llm.close)
                return list(await asyncio.gather(*tasks, return_exceptions=True)), 0
            texts = await asyncio.gather(*(one(i) for i in range(10)))
            return list(texts), llm.scheduler.pipelined_steps
        finally:
            llm.close()

    want, n_plain = asyncio.run(streams(False))
    got, n_piped = asyncio.run(streams(True))
    assert got == want and n_plain == 0 and n_piped > 0
    ended, _ = asyncio.run(streams(True, close_early=True))
    assert ended and all(isinstance(e, ClosedError) for e in ended)


@pytest.mark.parametrize("fuse", [True, False])
def test_a_full_cache_fails_the_same_with_queued_decodes(smol: tuple[Model, Vocab], fuse: bool) -> None:
    """Ten requests that outgrow a 256-cell cache: the decode queued in collect cannot find
    cells, the step falls back to the plain decode, which raises as without the pipeline and
    cancels every request; the tokens until then are the same, and the engine serves on."""
    m, v = smol

    def run(pipeline: bool) -> tuple[list[list[int]], BatchEngine]:
        ctx = Context(m, ContextParams(n_ctx=256, n_seq_max=10, kv_unified=True))
        engine = BatchEngine(ctx, v)
        engine.pipeline, engine.fuse = pipeline, fuse
        reqs = [engine.submit(BatchRequest(v.tokenize(t), 40)) for t in TEXTS[:10]]
        with pytest.raises(KVCacheFullError):
            engine.run()
        assert all(r.finish_reason == "cancelled" for r in reqs) and not engine.busy
        after = engine.submit(BatchRequest(v.tokenize(TEXTS[0]), 5))
        engine.run()
        assert after.finish_reason == "length" and len(after.output) == 5
        return [r.output for r in reqs], engine

    want, _ = run(False)
    got, engine = run(True)
    assert got == want and engine.pipelined_steps > 0
    engine.ctx.close()


def _count_queuings(engine: BatchEngine) -> list[int]:
    """[decodes the native call queued, decodes queued from Python], counted as the engine runs."""
    counts = [0, 0]
    native_run, python_launch = engine.pick_launch.run, engine._launch

    def run(*a: Any, **k: Any) -> Picked:
        picked = native_run(*a, **k)
        counts[0] += picked.launched
        return picked

    def launch(go: list[BatchRequest]) -> list[BatchRequest]:
        queued = python_launch(go)
        counts[1] += bool(queued)
        return queued

    engine.pick_launch.run, engine._launch = run, launch  # type: ignore[method-assign]
    return counts


def test_fused_steps_are_the_native_call(smol: tuple[Model, Vocab]) -> None:
    """With ``fuse`` every pipelined decode after the first is queued by the native call
    (wait, picks, next decode), without it none is; the same decodes queued either way."""
    m, v = smol
    counts = {}
    for fuse in (True, False):
        ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=12, kv_unified=True))
        engine = BatchEngine(ctx, v, greedy="host", host_threads=2)
        engine.pipeline, engine.fuse = True, fuse
        counts[fuse] = _count_queuings(engine)
        for i, t in enumerate(TEXTS):
            engine.submit(BatchRequest(v.tokenize(t), 6 + 2 * i, chain=_chain(i)))
        engine.run()
        assert engine.pipelined_steps == sum(counts[fuse])
        engine.close()
        ctx.close()
    # the first queued decode comes from Python (the step before built its batch)
    assert counts[True][0] >= 10 and counts[True][1] == 1
    assert counts[False][0] == 0 and counts[False][1] == sum(counts[True])


def test_a_knock_holds_the_native_calls_decode(smol: tuple[Model, Vocab]) -> None:
    """While a submit knocks (``PickLaunch.knock``: set by another thread during the wait),
    the native call picks but queues nothing, so the next step is a plain one that admits the
    newcomer; answered, it queues again. The tokens are the plain steps' either way."""
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=12, kv_unified=True))
    engine = BatchEngine(ctx, v)
    engine.pipeline = True
    counts = _count_queuings(engine)
    reqs = [engine.submit(BatchRequest(v.tokenize(t), 16)) for t in TEXTS[:10]]
    for _ in range(4):
        engine.step()
    native = counts[0]
    assert native > 0
    engine.pick_launch.knock()
    for _ in range(3):
        engine.step()
    assert counts[0] == native
    engine.pick_launch.answer()
    engine.run()
    assert counts[0] > native
    alone = Context(m, ContextParams(n_ctx=2048, n_seq_max=12, kv_unified=True))
    ref = BatchEngine(alone, v)
    want = [ref.submit(BatchRequest(v.tokenize(t), 16)) for t in TEXTS[:10]]
    ref.run()
    assert [r.output for r in reqs] == [r.output for r in want] and all(len(r.output) == 16 for r in reqs)
    for c in (ctx, alone):
        c.close()
