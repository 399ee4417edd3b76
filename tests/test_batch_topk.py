"""The backend's top-k candidates (``native/batch_topk.c``, ``TopKGroup``): what a sampled
request samples from when its sequence has a sampler of the group attached (on a GPU, the
batching engine's default for chains that begin with a top-k of at most 64). Run here on
the CPU backend, which runs the same nodes: the candidates hold each row's 64 largest
logits, with their ids (a 128,256-token vocabulary and SmolLM2's 49,152 through the two
stages of chunk maxima; the 512 tokens of stories260K through a plain top-k), and seeded
sampled texts equal the host's, token for token, in the batching engine, whatever the
options change between calls, without attaching anything again. (``Llama``, one sequence,
samples such chains on the host instead: the last test but one.)"""

from __future__ import annotations

import ctypes
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from llama_binding import Llama, capi
from llama_binding.core import Batch, Context, ContextParams, Model, _native
from llama_binding.core.sampler import SamplerChain, TopKGroup
from llama_binding.generation.batching import BatchEngine, BatchRequest

PROMPTS = ["Once upon a time", "The little dog", "Tom and Sue went", "One day a cat"]


@pytest.fixture(scope="module")
def bpe_tiny(tiny_model: Callable[..., Path]) -> Path:
    """Llama 3's vocabulary (128,256 = 1,002 chunks of 128)."""
    return tiny_model(vocab="llama-bpe", n_embd=64, n_layer=2, seed=7)


def _candidates(ctx: Context, i: int, n_vocab: int) -> tuple[np.ndarray, np.ndarray]:
    """Output i's candidate logits and their token ids (from the chunk indices: after the
    logits in the same row for the two stages, the sampled candidates for a plain top-k)."""
    n = int(capi.llama_get_sampled_logits_count_ith(ctx.ptr, i))
    n_ids = int(capi.llama_get_sampled_candidates_count_ith(ctx.ptr, i))
    logits = np.ctypeslib.as_array(capi.llama_get_sampled_logits_ith(ctx.ptr, i), shape=(n,)).copy()
    if n_ids == 0:  # one row of 10k: 8k logits, then 2k chunk indices as floats
        chunk_ids = np.empty(n - n * 8 // 10, dtype=np.int32)
        m = _native.topk_unpack(n_vocab, logits, chunk_ids)
        assert m == n * 8 // 10
        np.testing.assert_array_equal(chunk_ids, logits[m:])  # whole numbers, as they were
        logits, n = logits[:m], m
    else:
        ids_ptr = ctypes.cast(capi.llama_get_sampled_candidates_ith(ctx.ptr, i),
                              ctypes.POINTER(ctypes.c_int32))
        chunk_ids = np.ctypeslib.as_array(ids_ptr, shape=(n_ids,)).copy()
    ids = np.empty(n, dtype=np.int32)
    assert _native.topk_ids(n_vocab, chunk_ids, n, ids) == n
    return logits, ids


def test_unpacking_a_row_checks_its_layout_and_indices() -> None:
    """llama_binding_topk_unpack: a row of 640 floats for Llama 3's vocabulary (k 64: 1,002
    chunks of 128, then 1,024 chunks of 8) splits at 512; a row of another length, or for a
    vocabulary no chunk divides, is not such a row (-1); an index that is negative, past its
    stage's chunks, fractional or NaN is refused (-2), not turned into a token."""
    n_vocab, k = 128_256, 64
    row = np.zeros(10 * k, dtype=np.float32)
    row[8 * k:9 * k] = np.arange(k) + 900  # first stage: chunks 900..963 of 1,002
    row[9 * k:] = np.arange(k) * 16  # second stage: of 1,024
    ids = np.empty(2 * k, dtype=np.int32)
    assert _native.topk_unpack(n_vocab, row, ids) == 8 * k
    np.testing.assert_array_equal(ids, row[8 * k:].astype(np.int32))
    assert _native.topk_unpack(n_vocab, row[:-7], ids) == -1  # not 10 k long
    assert _native.topk_unpack(1_000, row, ids) == -1  # shorter than a row: a plain top-k
    for at, bad in ((8 * k, -1.0), (8 * k, 1_002.0), (9 * k, 1_024.0), (9 * k + 3, 2.5), (8 * k + 1, np.nan)):
        broken = row.copy()
        broken[at] = bad
        assert _native.topk_unpack(n_vocab, broken, ids) == -2, (at, bad)


@pytest.mark.parametrize("which", ["bpe", "smollm2", "stories"])
def test_the_candidates_are_each_rows_largest_logits(which: str, bpe_tiny: Path, smollm2: Path,
                                                     stories260k: Path) -> None:
    path = {"bpe": bpe_tiny, "smollm2": smollm2, "stories": stories260k}[which]
    model = Model(path)
    params = ContextParams(n_ctx=256, n_seq_max=3, n_batch=64, n_threads=1, n_threads_batch=1)
    plain, sampled = Context(model, params), Context(model, params)
    group = TopKGroup()
    chains = [SamplerChain([group.sampler()]) for _ in range(2)]
    try:
        for seq, chain in enumerate(chains):  # seq 2 keeps no sampler: raw logits
            assert sampled.attach_sampler(seq, chain)
        rows = {}
        for ctx in (plain, sampled):
            batch = Batch(64)
            for seq, toks in enumerate(([1, 50, 60, 70], [1, 80, 90], [1, 100, 110, 120, 130])):
                for pos, tok in enumerate(toks):
                    batch.add(tok, pos, [seq], pos == len(toks) - 1)
            ctx.decode(batch)
            rows[ctx is sampled] = batch
        n_vocab = plain.logits(3).shape[0]
        ends = [3, 6, 11]  # the batch index of each sequence's output
        k = min(TopKGroup.K, n_vocab)
        for seq in (0, 1):
            want = plain.logits(ends[seq])
            logits, ids = _candidates(sampled, ends[seq], n_vocab)
            assert len(ids) == (k if n_vocab <= 1024 else 8 * k)  # stories260K: a plain top-k
            assert len(set(ids.tolist())) == len(ids) and ((0 <= ids) & (ids < n_vocab)).all()
            np.testing.assert_array_equal(logits, want[ids])  # each id with its own logit
            np.testing.assert_array_equal(np.sort(logits)[::-1][:k], np.sort(want)[::-1][:k])  # the k best
        np.testing.assert_array_equal(sampled.logits(ends[2]), plain.logits(ends[2]))
    finally:
        for chain in chains:
            chain.close()
        group.close()
        sampled.close()
        plain.close()
        model.close()


@pytest.mark.parametrize("which", ["bpe", "smollm2"])
def test_one_sequence_samples_a_leading_top_k_on_the_host(which: str, bpe_tiny: Path,
                                                          smollm2: Path) -> None:
    """``Llama`` (one sequence): a chain that begins with a top-k runs on the host over the k
    largest logits (cheaper per token on an H200 than the candidates' nodes or llama.cpp's
    chain on the GPU): nothing is attached whatever the options change between calls, and
    every text is that of backend sampling off. A chain without a leading top-k still
    attaches llama.cpp's chain to the backend."""
    path = bpe_tiny if which == "bpe" else smollm2
    calls = [dict(seed=1), dict(seed=2, temperature=0.3, top_p=0.5), dict(seed=3, top_k=64, min_p=0.0),
             dict(seed=4, top_k=5, temperature=1.5), dict(temperature=0.0),
             dict(seed=5, top_p=1.0, min_p=0.2), dict(seed=6, top_k=100)]
    with Llama(path, n_ctx=512, backend_sampling=False) as host, \
            Llama(path, n_ctx=512, backend_sampling=True) as gpu_style:
        for i, opts in enumerate(calls):
            prompt = PROMPTS[i % len(PROMPTS)]
            want = host(prompt, max_tokens=24, **opts)["choices"][0]["text"]  # type: ignore[arg-type]
            got = gpu_style(prompt, max_tokens=24, **opts)["choices"][0]["text"]  # type: ignore[arg-type]
            assert got == want, opts
            assert gpu_style.engine.context.attached_sampler(0) is None, opts
        gpu_style(PROMPTS[0], max_tokens=4, seed=7, top_k=0, top_p=0.9)
        assert gpu_style.engine.context.attached_sampler(0) is not None


def test_the_batching_engine_samples_over_the_candidates(smollm2: Path) -> None:
    """Sampled requests of a batching engine with backend samplers take slots with a top-k
    sampler; their seeded texts equal those of host sampling, greedy ones too, mixed, and a
    steady mix attaches little. (The engine itself, stepped here: an AsyncLlama's batches
    depend on when its callers' requests arrive, and so do the last bits of the logits.)"""
    opts = [dict(seed=11), dict(seed=12, temperature=0.5, top_p=0.8), dict(temperature=0.0),
            dict(seed=13, top_k=20, min_p=0.1), dict(seed=14, top_k=200), dict(seed=15)]
    with Llama(smollm2, n_ctx=512) as llm:
        vocab, params = llm.engine.vocab, [llm.engine.sampling(o) for o in opts]
        prompts = [llm.tokenize(PROMPTS[i % 4].encode()) for i in range(len(opts))]

        def run(engine: BatchEngine) -> list[list[int]]:
            reqs = [engine.submit(BatchRequest(prompts[i], 20, llm.engine.request_chain(p)))
                    for i, p in enumerate(params)]
            engine.run()
            return [r.output for r in reqs]

        cparams = ContextParams(n_ctx=2048, n_seq_max=4, kv_unified=True)
        engines = [BatchEngine(Context(llm.engine.model, cparams), vocab, greedy=greedy)
                   for greedy in ("host", "backend")]
        host, gpu_style = engines
        try:
            for e in engines:
                e.BUSY = 0  # (few requests in flight would sample on the host: busy here)
            want = run(host)
            assert run(gpu_style) == want
            assert "topk" in gpu_style._slot_kind
            swaps = gpu_style.sampler_swaps
            gpu_style.drop_cached()
            assert run(gpu_style) == want
            assert gpu_style.sampler_swaps - swaps <= 4  # a steady mix attaches little
        finally:
            for e in engines:
                e.close()
                e.ctx.close()


def test_many_rows_over_the_candidates_on_threads(bpe_tiny: Path) -> None:
    """64 sampled sequences of one decode run their chains over the candidates on several
    threads (a thread per 32 rows): the seeded outputs equal the host's, one thread, token
    for token, for chains whose leading top-k is cut before the chain runs (k 40, 64, 7)
    and one without a top-k of its own."""
    n = 64
    with Llama(bpe_tiny, n_ctx=256) as llm:
        vocab = llm.engine.vocab
        kinds = [dict(top_k=40), dict(top_k=64, top_p=0.9), dict(top_k=7, min_p=0.05, temperature=1.5)]
        params = [llm.engine.sampling(dict(kinds[i % 3], seed=100 + i)) for i in range(n)]
        prompts = [[1, 10 + i, 200 + 3 * i] for i in range(n)]
        cparams = ContextParams(n_ctx=n * 32, n_seq_max=n, kv_unified=True)
        engines = [BatchEngine(Context(llm.engine.model, cparams), vocab, greedy=greedy, host_threads=threads)
                   for greedy, threads in (("host", 1), ("backend", 4))]
        try:
            outputs = []
            for e in engines:
                e.BUSY = 0
                reqs = [e.submit(BatchRequest(prompts[i], 12, llm.engine.request_chain(p)))
                        for i, p in enumerate(params)]
                e.run()
                outputs.append([r.output for r in reqs])
            assert "topk" in engines[1]._slot_kind
            assert outputs[1] == outputs[0]
            assert len({tuple(o) for o in outputs[0]}) > n // 2  # sampled, not one text
        finally:
            for e in engines:
                e.close()
                e.ctx.close()
