"""BatchEngine: many sequences in one context, on real models.

Each sequence's greedy output must equal the single-sequence greedy output for its prompt,
except where the single run's top-1/top-2 logit gap is below a small epsilon (batched
kernels change logits slightly): such cases are counted and must stay rare."""

from __future__ import annotations

import ctypes
import os
import random
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from llama_binding import capi
from llama_binding.core import Batch, Context, ContextParams, Model, SamplerChain, Vocab, _native
from llama_binding.core.sampler import GreedyGroup, Sampler
from llama_binding.errors import QueueFullError, SamplerError
from llama_binding.generation.batching import BatchEngine, BatchRequest, Greedy
from llama_binding.generation.steps import SequenceState, generate_tokens

EPS = 0.05


@pytest.fixture(scope="module")
def smol(smollm2: Path) -> Iterator[tuple[Model, Vocab]]:
    m = Model(smollm2)
    yield m, Vocab(m)
    m.close()


def single(m: Model, v: Vocab, prompt: list[int], n: int) -> tuple[list[int], list[float]]:
    """Plain greedy in its own context, and the top-1/top-2 gap before each token."""
    ctx = Context(m, ContextParams(n_ctx=512))
    gaps: list[float] = []

    def hook(_: object, logits: np.ndarray) -> None:
        top = np.partition(logits, -2)[-2:]
        gaps.append(float(top[1] - top[0]))

    out = list(generate_tokens(ctx, v, None, prompt, SequenceState(ctx), n, logits_hook=hook))
    ctx.close()
    return out, gaps


def check_equal(got: list[int], want: list[int], gaps: list[float], ties: list[float],
                eps: float = EPS) -> None:
    i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), None)
    if i is None:
        assert len(got) == len(want)
        return
    assert gaps[i] < eps, f"diverged at {i} with gap {gaps[i]}"
    ties.append(gaps[i])


#: Evaluating a prompt's last token alone (after a copied prefix, as prefix reuse does too)
#: instead of inside the prompt's batch moves SmolLM2's logits by up to 0.58 (measured on three
#: prompts): a flip needs a top-1/top-2 gap below twice that.
EPS_LAST_TOKEN_ALONE = 1.2


TEXTS = [
    "The capital of France is", "Once upon a time, in a land far away,", "def fibonacci(n):",
    "The three primary colors are", "Water boils at", "My favourite food is",
    "In 1969, the first person to walk on the moon was", "import numpy as np\n",
    "The quick brown fox", "Photosynthesis is the process", "1, 2, 3, 4,", "Dear Sir or Madam,",
]


@pytest.mark.parametrize(("greedy", "unified"), [("host", True), ("backend", True), ("backend", False)])
def test_batched_greedy_equals_single_greedy(smol: tuple[Model, Vocab], greedy: Greedy,
                                             unified: bool) -> None:
    """12 requests through 8 slots give each prompt's own greedy tokens, with one KV cache
    for all or one per sequence (whose batches are built in sequence order)."""
    m, v = smol
    prompts = [v.tokenize(t) for t in TEXTS]
    n = 24
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=8, kv_unified=unified, n_batch=64))
    engine = BatchEngine(ctx, v, greedy=greedy)
    assert ctx.n_ctx_seq == (2048 if unified else 256)
    assert engine.greedy == greedy
    reqs = [engine.submit(BatchRequest(p, n)) for p in prompts]  # 12 requests, 8 slots
    engine.run()
    ties: list[float] = []
    for p, r in zip(prompts, reqs):
        want, gaps = single(m, v, p, n)
        assert r.done and r.finish_reason in ("length", "stop")
        check_equal(r.output, want, gaps, ties)
    assert len(ties) <= 1, ties
    # every slot freed, its memory keeping its last request's evaluated tokens (for reuse)
    assert all(ctx.seq_pos_max(s) == len(engine.cached(s)) - 1 for s in range(8))
    # (with one KV cache for all, only what finished while few requests were in flight)
    last = {r.seq_id: r for r in sorted(reqs, key=lambda r: r.admitted_at)}  # each slot's last request
    kept = [s for s, r in last.items() if engine.cached(s)]
    for s in kept:
        r = last[s]
        assert engine.cached(s) == (r.prompt + r.output)[:len(r.prompt) + len(r.output) - 1]
    assert kept and (unified or len(kept) == 8)  # a stream each: every slot keeps its own
    # chunked prefill: the prompts of 8 sequences did not fit one 64-token batch at once
    assert engine.steps > n


@pytest.mark.parametrize("greedy", ["host", "backend"])
def test_no_sequence_sees_another(smol: tuple[Model, Vocab], greedy: Greedy) -> None:
    """A sequence told a secret continues it; one that was not told must not know it, even
    when it reuses the slot the secret was in."""
    m, v = smol
    told = v.tokenize("The secret password is 'bluebird'. Repeat: the secret password is '")
    blind = v.tokenize("Repeat: the secret password is '")
    want_blind, _ = single(m, v, blind, 8)
    ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=2, kv_unified=True))
    engine = BatchEngine(ctx, v, greedy=greedy)
    a = engine.submit(BatchRequest(told, 8))
    b = engine.submit(BatchRequest(blind, 8))
    c = engine.submit(BatchRequest(blind, 8))  # waits; gets a freed slot
    engine.run()
    assert "blue" in v.detokenize(a.output).decode()
    for r in (b, c):
        assert r.output == want_blind
        assert "blue" not in v.detokenize(r.output).decode()


def test_mixed_lengths_limits_and_cancel(smol: tuple[Model, Vocab]) -> None:
    m, v = smol
    rng = random.Random(3)
    ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=4, kv_unified=True, n_batch=32))
    engine = BatchEngine(ctx, v, max_waiting=6)
    reqs = []
    for _ in range(6):
        text = " ".join(rng.choice(["alpha", "beta", "gamma", "delta"]) for _w in range(rng.randint(1, 60)))
        reqs.append(engine.submit(BatchRequest(v.tokenize(text), max_tokens=rng.randint(1, 20))))
    with pytest.raises(QueueFullError):
        engine.submit(BatchRequest(v.tokenize("one more"), 4))
    engine.step()
    engine.step()
    victim = next(r for r in reqs if not r.done and r.phase != "waiting")
    engine.cancel(victim)
    assert victim.finish_reason == "cancelled"
    assert ctx.seq_pos_max(victim.seq_id) == len(engine.cached(victim.seq_id)) - 1
    engine.run()
    for r in reqs:
        assert r.done
        if r is not victim and r.finish_reason == "length":
            assert len(r.output) == r.max_tokens


def test_generator_and_context_limit(smol: tuple[Model, Vocab]) -> None:
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=256, n_seq_max=2, kv_unified=True))
    engine = BatchEngine(ctx, v)
    prompts = [v.tokenize("Count: 1, 2, 3,"), v.tokenize("Letters: a, b, c,")]
    got: dict[int, list[int]] = {0: [], 1: []}
    for i, tok in engine.generate(prompts, max_tokens=10):
        got[i].append(tok)
    for i, p in enumerate(prompts):
        want, _ = single(m, v, p, 10)
        assert got[i] == want
    # a prompt that fills the context: generation stops at the last cell, as the plain loop
    long = v.tokenize("word " * 300)[: ctx.n_ctx_seq - 3]
    r = engine.submit(BatchRequest(long))
    engine.run()
    assert r.finish_reason == "length" and len(long) + len(r.output) == ctx.n_ctx_seq + 1
    with pytest.raises(ValueError):
        engine.submit(BatchRequest([]))


def test_shared_prompt_prefix_is_copied_not_evaluated(smol: tuple[Model, Vocab]) -> None:
    m, v = smol
    prompt = v.tokenize("Once upon a time, in a small village by the sea, there lived an old "
                        "fisherman who told stories to the children every evening. " * 4)
    ctx = Context(m, ContextParams(n_ctx=2048, n_seq_max=4, kv_unified=True))
    engine = BatchEngine(ctx, v)
    ctx.perf_reset()
    reqs = [engine.submit(BatchRequest(prompt, 8)) for _ in range(4)]
    reqs.append(engine.submit(BatchRequest(prompt[:40] + v.tokenize(" A different ending."), 8)))
    engine.run()
    evaluated = int(ctx.perf()["n_p_eval"])
    # the first prompt once, the last token of each copy, the fifth prompt's new part; not 4x
    assert engine.shared_tokens >= 3 * (len(prompt) - 1)
    assert evaluated < 2 * len(prompt), evaluated
    want, gaps = single(m, v, prompt, 8)
    ties: list[float] = []
    check_equal(reqs[0].output, want, gaps, ties)  # the leader evaluated its prompt in full
    for r in reqs[1:4]:  # the copies evaluated only the last prompt token: all alike
        assert r.output == reqs[1].output
        check_equal(r.output, want, gaps, ties, EPS_LAST_TOKEN_ALONE)
    assert len(ties) <= 3, ties
    # without a unified cache nothing is shared (a partial seq_cp would abort the process)
    split = Context(m, ContextParams(n_ctx=2048, n_seq_max=2, kv_unified=False))
    other = BatchEngine(split, v)
    a, b = other.submit(BatchRequest(prompt, 4)), other.submit(BatchRequest(prompt, 4))
    other.run()
    assert other.shared_tokens == 0 and a.output == b.output == want[:4]


def test_backend_greedy_beside_sampled_requests(smol: tuple[Model, Vocab]) -> None:
    """A request with its own sampler chain (one that does not begin with a top-k: those
    take the backend's candidates, tests/test_batch_topk.py) takes its slot off the backend
    (it samples the logits on the host); the slot stays so for the next such request, and a plain greedy
    request takes a slot still on the backend (or puts its slot back there). Greedy
    neighbours are unaffected, and a steady kind of traffic swaps no sampler."""
    m, v = smol
    prompts = [v.tokenize(t) for t in TEXTS[:6]]

    def run(greedy: Greedy, sampled: Callable[[int], bool]) -> tuple[list[list[int]], BatchEngine]:
        ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=3, kv_unified=True))
        engine = BatchEngine(ctx, v, greedy=greedy)
        reqs = []
        for i, p in enumerate(prompts):
            chain = (SamplerChain([Sampler.min_p(0.05), Sampler.temp(0.9), Sampler.dist(7 + i)])
                     if sampled(i) else None)
            reqs.append(engine.submit(BatchRequest(p, 12, chain)))
        engine.run()
        return [r.output for r in reqs], engine

    def mixed(i: int) -> bool:
        return i % 2 == 1

    want, _ = run("host", mixed)
    got, engine = run("backend", mixed)
    assert got == want
    engine.close()
    assert not any(engine.ctx.attached_sampler(s) for s in range(3))
    # six sampled requests through three slots: each slot is detached once, never re-attached
    _, engine = run("backend", lambda i: True)
    assert engine.sampler_swaps == 3 + 3  # the 3 attached at the start, then 3 detached
    assert all(c is None for c in engine._slot_chain)
    # then six greedy ones: each slot is attached again once
    for p in prompts:
        engine.submit(BatchRequest(p, 4))
    engine.run()
    assert engine.sampler_swaps == 9 and all(c is not None for c in engine._slot_chain)
    engine.close()


@pytest.mark.parametrize("unified", [True, False])
def test_a_next_turn_reuses_its_slots_memory(smol: tuple[Model, Vocab], unified: bool) -> None:
    """A chat's next turn (the last prompt, its answer, a new line) takes the slot whose
    memory holds that prefix and evaluates only the rest: llama-server's cache_prompt. The
    output is the prompt's own greedy output (up to near-ties: the reused cells came from
    other batches); an unrelated prompt reuses nothing; close() frees every slot."""
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=2, kv_unified=unified))
    engine = BatchEngine(ctx, v)
    first = engine.submit(BatchRequest(v.tokenize(TEXTS[1]), 8))
    other = engine.submit(BatchRequest(v.tokenize(TEXTS[6]), 8))
    engine.run()
    turn = first.prompt + first.output + v.tokenize(" And then", add_special=False)
    nxt = engine.submit(BatchRequest(turn, 8))
    engine.run()
    assert nxt.seq_id == first.seq_id
    assert engine.reused_tokens == len(first.prompt) + len(first.output) - 1  # all but the unevaluated last
    want, gaps = single(m, v, turn, 8)
    ties: list[float] = []
    check_equal(nxt.output, want, gaps, ties, EPS_LAST_TOKEN_ALONE)
    fresh = engine.submit(BatchRequest(v.tokenize(TEXTS[3]), 4))
    engine.run()
    assert engine.reused_tokens == len(first.prompt) + len(first.output) - 1 and fresh.output
    assert ctx.seq_pos_max(other.seq_id) in (-1, len(engine.cached(other.seq_id)) - 1)
    engine.close()
    assert all(ctx.seq_pos_max(s) == -1 for s in range(2))
    ctx.close()


def test_a_quiet_engine_samples_on_the_host_rather_than_swap(smol: tuple[Model, Vocab]) -> None:
    """One request at a time, options changing every time (a chat's turns: greedy, a
    leading top-k, a chain of its own): with few requests in flight the engine swaps a
    slot's backend sampler at most once (each swap rebuilds llama.cpp's graphs) and the
    host samples every kind after that; the outputs are the host's."""
    m, v = smol
    prompts = [v.tokenize(t) for t in TEXTS[:6]]

    def chain(i: int) -> SamplerChain | None:
        if i % 3 == 0:
            return None
        first = Sampler.top_k(20) if i % 3 == 1 else Sampler.min_p(0.05)
        return SamplerChain([first, Sampler.temp(0.9), Sampler.dist(i)])

    def run(greedy: Greedy) -> tuple[list[list[int]], BatchEngine]:
        ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=2, kv_unified=True))
        engine = BatchEngine(ctx, v, greedy=greedy)
        out = []
        for i, p in enumerate(prompts):
            r = engine.submit(BatchRequest(p, 8, chain(i)))
            engine.run()
            out.append(r.output)
        return out, engine

    want, _ = run("host")
    got, engine = run("backend")
    assert got == want
    assert engine.sampler_swaps == 2 + 1  # the 2 slots attached at the start, then one detached
    assert engine._slot_kind.count(None) == 1
    engine.close()


ROWS = 12  # 12 rows x 128k logits: above the thresholds for threads
Decoded = tuple[Vocab, Context, Batch, np.ndarray]


@pytest.fixture
def rows_decoded(tiny_bpe: Path) -> Iterator[Decoded]:
    """The tiny 128k-vocabulary model after one decode of 12 sequences' prompts: (vocab,
    context, the batch, the batch indices of its 12 output rows)."""
    m = Model(tiny_bpe)
    ctx = Context(m, ContextParams(n_ctx=512, n_seq_max=ROWS, kv_unified=True))
    batch = Batch(64, 1)
    rng = random.Random(5)
    for s in range(ROWS):
        batch.add_sequence([rng.randrange(1000, 100000) for _ in range(3)], 0, s, logits_last=True)
    ctx.decode(batch)
    yield Vocab(m), ctx, batch, np.array(batch.output_indices(), dtype=np.int32)
    ctx.close()
    m.close()


def test_argmax_rows_on_threads_and_backend_rows(rows_decoded: Decoded) -> None:
    """Many 128k-token rows: the threaded host argmax and the batched greedy backend sampler
    both give numpy's argmax of every row."""
    v, ctx, batch, rows = rows_decoded
    n = ROWS
    want = np.array([int(np.argmax(ctx.logits(int(i)))) for i in rows], dtype=np.int32)
    for threads in (1, 3, 64):
        out = np.full(n, -1, dtype=np.int32)
        ctx.argmax_rows(v, rows, out, threads)
        assert (out == want).all(), threads
    with pytest.raises(ValueError):
        ctx.argmax_rows(v, rows.astype(np.int64), np.zeros(n, dtype=np.int32))  # type: ignore[arg-type]
    group = GreedyGroup()
    chains = [SamplerChain([group.sampler()]) for _ in range(n)]
    group.close()  # the samplers keep the native group alive
    assert all(ctx.attach_sampler(s, c) for s, c in enumerate(chains))
    ctx.seq_rm(-1, -1, -1)
    ctx.decode(batch)
    out = np.full(n, -1, dtype=np.int32)
    ctx.sampled_rows(rows, out)
    assert (out == want).all()
    ctx.close()  # with the chains attached
    for c in chains:
        c.close()


def test_the_rows_threads_are_kept_and_survive_a_fork(rows_decoded: Decoded) -> None:
    """The rows functions' threads (native/rows_pool.c) are started once and kept: many calls
    with thread counts going up and down (a worker started during a call takes that call's
    share) give numpy's argmax every time; a forked child, which has none of the parent's
    workers, gets its own and does not hang."""
    v, ctx, _, rows = rows_decoded
    want = np.array([int(np.argmax(ctx.logits(int(i)))) for i in rows], dtype=np.int32)
    out = np.full(ROWS, -1, dtype=np.int32)
    for threads in [2, 5, 3, 12, 1, 7, 4] * 20:
        out[:] = -1
        ctx.argmax_rows(v, rows, out, threads)
        assert (out == want).all(), threads
    pid = os.fork()
    if pid == 0:  # the child (one thread): 0 only with the right rows and 5 workers kept after
        code = 1
        try:
            tasks = Path("/proc/self/task")
            before = len(list(tasks.iterdir())) if tasks.exists() else 0
            out[:] = -1
            ctx.argmax_rows(v, rows, out, 6)
            kept = len(list(tasks.iterdir())) - before if tasks.exists() else 5
            code = 0 if (out == want).all() and kept == 5 else 2 if kept == 5 else 3
        finally:
            os._exit(code)
    deadline = time.monotonic() + 60
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    if done[0] == 0:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung in argmax_rows")
    assert os.waitstatus_to_exitcode(done[1]) == 0


def test_sample_rows_is_llama_cpp_sampling_on_threads(rows_decoded: Decoded) -> None:
    """Each row sampled with its own chain in one native call (on threads) gives the token
    that llama.cpp's llama_sampler_sample gives with an equal chain, and accepts it; a chain
    that selects nothing raises SamplerError instead of aborting, the other rows sampled."""
    v, ctx, _, rows = rows_decoded
    n = ROWS

    def chain(seed: int) -> SamplerChain:
        return SamplerChain([Sampler.penalties(v.n_tokens, 64, 1.3), Sampler.top_k(40),
                             Sampler.top_p(0.9), Sampler.temp(1.5), Sampler.dist(seed)])

    ours, theirs = [chain(s) for s in range(n)], [chain(s) for s in range(n)]
    for threads in (1, 4):
        want = [c.sample(ctx, int(r)) for c, r in zip(theirs, rows)]
        out = np.full(n, -1, dtype=np.int32)
        ctx.sample_rows(v, [c.address for c in ours], rows, out, threads)
        assert out.tolist() == want, threads  # the second round also checks the accepted history
    assert len(set(want)) > 1
    broken = SamplerChain([Sampler.top_k(5)])  # selects nothing: llama_sampler_sample would abort
    out = np.full(n, -1, dtype=np.int32)
    with pytest.raises(SamplerError):
        ctx.sample_rows(v, [broken.address] + [c.address for c in ours[1:]], rows, out, 4)
    assert out[0] == -1 and (out[1:] >= 0).all()
    with pytest.raises(ValueError):
        ctx.sample_rows(v, [broken.address], rows, out)


def test_a_leading_top_k_is_taken_straight_from_the_logits(rows_decoded: Decoded) -> None:
    """A chain that starts with top-k: sample_rows, and SamplerChain.sample of one row, take
    the k candidates straight from the 128k logits (a heap pass) instead of sorting a
    candidate per token, and sample the same tokens as llama.cpp's whole chain, for every k
    (k >= the vocabulary: no shortcut)."""
    v, ctx, _, rows = rows_decoded
    n = ROWS

    def chain(k: int, seed: int) -> SamplerChain:
        return SamplerChain([Sampler.top_k(k), Sampler.top_p(0.95), Sampler.min_p(0.01),
                             Sampler.temp(1.7), Sampler.dist(seed)])

    def llama_cpp(c: SamplerChain, row: int) -> int:  # llama.cpp's own: every token a candidate
        return int(capi.llama_sampler_sample(c.ptr, ctx.ptr, row))

    assert chain(40, 0).leading_top_k == 40
    assert SamplerChain([Sampler.temp(0.5), Sampler.top_k(40)]).leading_top_k == 0
    for k in (1, 2, 40, 1000, v.n_tokens, v.n_tokens + 9):
        ours, single, theirs = ([chain(k, s) for s in range(n)] for _ in range(3))
        top_k = np.array([c.leading_top_k for c in ours], dtype=np.int32)
        for _ in range(3):  # several draws: the chains' states advance alike
            want = [llama_cpp(c, int(r)) for c, r in zip(theirs, rows)]
            out = np.full(n, -1, dtype=np.int32)
            ctx.sample_rows(v, [c.address for c in ours], rows, out, 3, top_k)
            assert out.tolist() == want, k
            # one row at a time (Llama's sampled decode): the same cut, the same tokens
            assert [c.sample(ctx, int(r)) for c, r in zip(single, rows)] == want, k
        if k == 1:
            assert out.tolist() == [int(np.argmax(ctx.logits(int(r)))) for r in rows]
    with pytest.raises(ValueError):
        ctx.sample_rows(v, [c.address for c in ours], rows, out, 1, np.zeros(2, dtype=np.int32))


def assert_draws_as_llama_cpp(rows_decoded: Decoded, ours: list[SamplerChain], theirs: list[SamplerChain],
                              draw: int, threads: int) -> list[int]:
    """One draw of each row: ``ours`` through ``Context.sample_rows`` with their cuts (the
    first draw with ``first_cut``), ``theirs`` through llama.cpp's ``llama_sampler_sample``
    over the whole row; the same tokens (returned)."""
    v, ctx, _, rows = rows_decoded
    want = [int(capi.llama_sampler_sample(c.ptr, ctx.ptr, int(r))) for c, r in zip(theirs, rows)]
    cut = np.array([c.first_cut if draw == 0 else c.leading_cut for c in ours], dtype=np.int32)
    out = np.full(len(rows), -1, dtype=np.int32)
    ctx.sample_rows(v, [c.address for c in ours], rows, out, threads, cut)
    assert out.tolist() == want, draw
    return want


def test_a_top_k_after_penalties_is_taken_straight_from_the_logits_for_the_first_token(
        rows_decoded: Decoded) -> None:
    """A chain of penalties then top-k (a repeat penalty with llama-cpp-python's top-k 40):
    its first token, before the chain accepted any, comes from the k largest logits (the
    penalties' window is empty: they change nothing), the same as llama.cpp's whole chain;
    the next draws, with a window, take every logit again (first_top_k is for a fresh
    chain only) and still agree."""
    v = rows_decoded[0]
    n = ROWS

    def chain(seed: int) -> SamplerChain:
        return SamplerChain([Sampler.penalties(v.n_tokens, 64, 1.3, 0.1, 0.2), Sampler.top_k(40),
                             Sampler.top_p(0.95), Sampler.temp(1.7), Sampler.dist(seed)])

    assert (chain(0).leading_top_k, chain(0).first_top_k) == (0, 40)
    late = SamplerChain([Sampler.penalties(v.n_tokens), Sampler.temp(0.5), Sampler.top_k(40)])
    assert late.first_top_k == 0
    assert SamplerChain([Sampler.top_k(7), Sampler.dist(1)]).first_top_k == 7
    ours, theirs = [chain(s) for s in range(n)], [chain(s) for s in range(n)]
    assert (chain(0).leading_cut, chain(0).first_cut) == (0, 40)
    for draw in range(3):  # the first with first_top_k, then with leading_top_k (0: every logit)
        want = assert_draws_as_llama_cpp(rows_decoded, ours, theirs, draw, 3)
    assert len(set(want)) > 1


def test_a_failing_chain_ends_only_its_request(smol: tuple[Model, Vocab]) -> None:
    m, v = smol
    ctx = Context(m, ContextParams(n_ctx=1024, n_seq_max=3, kv_unified=True))
    engine = BatchEngine(ctx, v, host_threads=2)
    good = engine.submit(BatchRequest(v.tokenize(TEXTS[0]), 6))
    sampled = engine.submit(BatchRequest(v.tokenize(TEXTS[1]), 6, SamplerChain([Sampler.dist(3)])))
    bad = engine.submit(BatchRequest(v.tokenize(TEXTS[2]), 6, SamplerChain([Sampler.top_k(5)])))
    engine.run()
    assert isinstance(bad.error, SamplerError) and bad.finish_reason == "cancelled" and not bad.output
    assert good.error is None and len(good.output) == 6
    assert sampled.error is None and len(sampled.output) == 6
    assert all(ctx.seq_pos_max(s) == len(engine.cached(s)) - 1 for s in range(3))


@pytest.mark.parametrize("p", [0.5, 0.95, 0.9999])
def test_a_leading_top_p_is_applied_natively_with_llama_cpps_result(rows_decoded: Decoded, p: float) -> None:
    """A chain that leads with top-p (top-k 0, then min-p, temperature and a seeded draw):
    the native step computes llama.cpp's top-p itself (native/top_p.c, no sort of the
    whole row) and runs the chain's other samplers after it; every draw, the first one
    included, picks what llama.cpp's whole chain picks."""
    v, ctx, _, rows = rows_decoded
    n = ROWS

    def chain(seed: int) -> SamplerChain:
        return SamplerChain([Sampler.top_p(p), Sampler.min_p(0.02), Sampler.temp(1.9), Sampler.dist(seed)])

    assert chain(0).leading_cut == chain(0).first_cut < 0 and chain(0).leading_top_k == 0
    assert SamplerChain([Sampler.penalties(v.n_tokens, 64, 1.1), Sampler.top_p(p)]).first_cut == 0
    ours, theirs = [chain(s) for s in range(n)], [chain(s) for s in range(n)]
    for draw in range(3):
        assert_draws_as_llama_cpp(rows_decoded, ours, theirs, draw, 3)
    single = chain(7)
    assert single.sample(ctx, int(rows[0])) == capi.llama_sampler_sample(chain(7).ptr, ctx.ptr, int(rows[0]))


@pytest.mark.parametrize("penalties", [(64, 1.3, 0.1, 0.2), (3, 1.1, 0.0, 0.0), (16, 0.7, -0.5, 0.0)])
def test_penalties_then_top_k_take_their_candidates_from_the_window_and_the_largest_logits(
        rows_decoded: Decoded, penalties: tuple[int, float, float, float]) -> None:
    """A chain of penalties then top-k (Ollama's repeat penalty with top-k 40): the native
    step reads the penalties' window (native/penalties.c wraps llama.cpp's sampler) and runs
    the chain over the k + window largest logits and the window's tokens; every draw picks
    what llama.cpp's chain over the whole row picks, as the window fills and wraps (last_n
    3), with penalties that raise logits too (repeat 0.7, a negative frequency penalty)."""
    v, ctx, _, rows = rows_decoded
    n = ROWS
    last_n, repeat, freq, present = penalties

    def chain(seed: int, window: bool) -> SamplerChain:
        return SamplerChain([Sampler.penalties(v.n_tokens, last_n, repeat, freq, present, window=window),
                             Sampler.top_k(40), Sampler.top_p(0.95), Sampler.temp(1.5), Sampler.dist(seed)])

    ours, theirs = [chain(s, True) for s in range(n)], [chain(s, False) for s in range(n)]
    assert ours[0].leading_cut == _native.CUT_PENALTIES | 40 and ours[0].host_only
    assert theirs[0].leading_cut == 0 and not theirs[0].host_only
    seen = []
    for draw in range(8):
        seen += assert_draws_as_llama_cpp(rows_decoded, ours, theirs, draw, 2)
        if draw == 4:  # a reset empties both windows
            for c in [*ours, *theirs]:
                c.reset()
    assert len(set(seen)) > n  # (the draws move: the penalties act)
    a, b = capi.llama_sampler_clone(ours[1].ptr), capi.llama_sampler_clone(theirs[1].ptr)  # windows and all
    try:
        want = [int(capi.llama_sampler_sample(b, ctx.ptr, int(rows[1])))]
        out = np.full(1, -1, dtype=np.int32)
        address = ctypes.cast(a, ctypes.c_void_p).value or 0
        ctx.sample_rows(v, [address], rows[1:2], out, 1, np.array([ours[1].leading_cut], dtype=np.int32))
        assert out.tolist() == want
    finally:
        capi.llama_sampler_free(a)
        capi.llama_sampler_free(b)
