"""AsyncLlama: concurrent asyncio callers on one continuous-batching engine (SmolLM2)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llama_binding import AsyncLlama, ContextOverflowError, Llama, QueueFullError

PROMPTS = ["The capital of France is", "Once upon a time", "def fib(n):", "Water boils at",
           "1, 2, 3,", "The three primary colors are", "Dear Sir or Madam,", "import numpy as np\n"]


@pytest.fixture(scope="module", params=["host", "backend", "overlap"],
                ids=["host-greedy", "backend-greedy", "overlapped-hand-on"])
def allm(smollm2: Path, request: pytest.FixtureRequest) -> Iterator[AsyncLlama]:
    """Plain greedy on the host (argmax_rows), or in the decode (the slots' backend samplers,
    what a GPU gets by default); "overlapped-hand-on" hands every step's tokens on between
    queuing its decode and waiting for it, as on a GPU (here the CPU's decode is done when
    it is queued: the same results, in the order a GPU gives them)."""
    backend = request.param == "backend"
    a = AsyncLlama(smollm2, n_seq_max=4, n_ctx=2048, backend_sampling=backend)
    assert a.scheduler.greedy == ("backend" if backend else "host")
    assert not a._overlap  # the CPU's decode is synchronous
    if request.param == "overlap":
        a._overlap, a.OVERLAP_MIN = True, 1
    yield a
    a.close()


@pytest.fixture(scope="module")
def plain(smollm2: Path) -> Iterator[Llama]:
    with Llama(smollm2, n_ctx=512) as llm:
        yield llm


def test_concurrent_callers_get_their_own_greedy_text(allm: AsyncLlama, plain: Llama) -> None:
    async def main() -> list[Any]:
        return await asyncio.gather(*[allm.acreate_completion(p, max_tokens=20, temperature=0.0)
                                      for p in PROMPTS])  # 8 callers, 4 slots

    results = asyncio.run(main())
    differ = 0
    for p, r in zip(PROMPTS, results):
        want = plain.create_completion(p, max_tokens=20, temperature=0.0)
        differ += r["choices"][0]["text"] != want["choices"][0]["text"]
        assert r["usage"]["completion_tokens"] == want["usage"]["completion_tokens"]
    assert differ <= 1  # batched kernels may flip a near-tie (tests/generation/test_batching.py)


def test_streaming_stop_and_cancel_leave_others_running(allm: AsyncLlama, plain: Llama) -> None:
    async def stream(prompt: str, **kw: Any) -> tuple[str, str | None]:
        it = await allm.acreate_completion(prompt, temperature=0.0, stream=True, **kw)
        parts, reason = [], None
        async for c in it:  # type: ignore[union-attr]
            parts.append(c["choices"][0]["text"])
            reason = c["choices"][0]["finish_reason"] or reason
        return "".join(parts), reason

    async def abandoned() -> None:
        it = await allm.acreate_completion("Once upon a time", max_tokens=200, temperature=0.0, stream=True)
        async for _ in it:  # type: ignore[union-attr]
            break  # the caller walks away after one chunk
        await it.aclose()  # type: ignore[union-attr]

    async def main() -> list[Any]:
        slow = asyncio.ensure_future(allm.acreate_completion("Tell me a story.", max_tokens=200,
                                                             temperature=0.0))
        await asyncio.sleep(0.05)
        slow.cancel()  # a cancelled caller
        return await asyncio.gather(stream("Count: 1, 2, 3,", max_tokens=40, stop=["7"]),
                                    abandoned(), stream("Water boils at", max_tokens=12),
                                    return_exceptions=True)

    steps_before = allm.scheduler.steps
    counted, _, water = asyncio.run(main())
    assert counted == (" 4, 5, 6, ", "stop")
    want = plain.create_completion("Water boils at", max_tokens=12, temperature=0.0)["choices"][0]["text"]
    assert water == (want, "length")
    # the cancelled and the abandoned callers' requests end and free their slots
    deadline = time.monotonic() + 10
    while allm.n_outstanding and time.monotonic() < deadline:
        time.sleep(0.01)
    assert allm.n_outstanding == 0
    # had the two 200-token requests gone on, the engine would have stepped 200 times
    assert allm.scheduler.steps - steps_before < 100


def test_queue_is_bounded(smollm2: Path) -> None:
    a = AsyncLlama(smollm2, n_seq_max=1, n_ctx=512, max_waiting=2)
    try:
        async def main() -> list[Any]:
            tasks = [asyncio.ensure_future(a.acreate_completion("Hello", max_tokens=8, temperature=0.0))
                     for _ in range(3)]  # 1 slot + 2 waiting
            await asyncio.sleep(0)
            with pytest.raises(QueueFullError, match="retry later"):
                await a.acreate_completion("Hello", max_tokens=8)
            return await asyncio.gather(*tasks)

        done = asyncio.run(main())
        assert all(r["usage"]["completion_tokens"] == 8 for r in done)
        with pytest.raises(ContextOverflowError):
            asyncio.run(a.acreate_completion([1] * 10_000))  # type: ignore[arg-type]
        assert asyncio.run(a.acreate_completion("Hello", max_tokens=2))["usage"]["completion_tokens"] == 2  # type: ignore[index]
    finally:
        a.close()
    with pytest.raises(Exception, match="closed"):
        asyncio.run(a.acreate_completion("Hello"))  # type: ignore[arg-type]


def test_a_next_turn_continues_from_its_slot_unless_an_embedding_cleared_it(smollm2: Path) -> None:
    """A prompt that extends a finished one continues from that slot's memory (only the new
    tokens are evaluated); an embedding run between them clears the context's memory, so the
    next turn evaluates its whole prompt and answers as a fresh evaluation does."""
    turn2 = " Once upon a time there was a little fox who lived"

    async def turns(embed: bool) -> tuple[str, int]:
        allm = AsyncLlama(smollm2, n_seq_max=2, n_ctx=1024, embedding=True)
        try:
            first = await allm.acreate_completion(PROMPTS[1], max_tokens=12, temperature=0.0)
            if embed:
                await allm.aembed("an unrelated sentence")
            before = allm.scheduler.reused_tokens
            prompt = PROMPTS[1] + first["choices"][0]["text"] + turn2
            out = await allm.acreate_completion(prompt, max_tokens=12, temperature=0.0)
            fresh = await allm.acreate_completion(prompt, max_tokens=12, temperature=0.0, cache_prompt=False)
            if embed:
                assert out["choices"][0]["text"] == fresh["choices"][0]["text"]
            return out["choices"][0]["text"], allm.scheduler.reused_tokens - before
        finally:
            allm.close()

    _, reused = asyncio.run(turns(embed=False))
    assert reused >= 12  # the first prompt and its answer, but for the unevaluated last token
    _, reused = asyncio.run(turns(embed=True))
    assert reused == 0
