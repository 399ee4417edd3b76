"""AsyncLlama under stress: close() with requests in flight, several event loops at once,
and many cancelled requests (stories260K, one thread). Cases that could crash or hang run
in a child interpreter (tests/_child.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from _child import Child, raised

from llama_binding import AsyncLlama

CLOSE_IN_FLIGHT = r'''
import asyncio, threading, time
from llama_binding import AsyncLlama

allm = AsyncLlama(sys.argv[1], n_seq_max=2, n_ctx=4096, n_threads=1)
if sys.argv[3] == "overlap":  # tokens handed on between queuing a decode and waiting for it (a GPU's way)
    allm._overlap, allm.OVERLAP_MIN = True, 1
LONG = list(range(3, 300)) * 6  # a prompt decode that takes a while

async def plain(prompt):
    r = await allm.acreate_completion(prompt, max_tokens=1500, temperature=0.0, ignore_eos=True)
    return r["choices"][0]["finish_reason"]

async def streamed(prompt):
    it = await allm.acreate_completion(prompt, max_tokens=1500, temperature=0.0, ignore_eos=True,
                                       stream=True)
    async for _ in it:
        pass
    return "no error"

async def main(close_in_loop):
    # two running in the slots, one prefilling a long prompt, two waiting for a slot
    tasks = [asyncio.ensure_future(c) for c in (plain("Once upon a time"), streamed("The little dog"),
                                                plain(LONG), streamed("Lily"), plain("Tom"))]
    await asyncio.sleep(0.4)
    t0 = time.monotonic()
    if close_in_loop:
        allm.close()  # blocking, on the loop's own thread
    else:
        await asyncio.get_running_loop().run_in_executor(None, allm.close)
    took = time.monotonic() - t0
    results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    return took, results

took, results = asyncio.run(main(close_in_loop=sys.argv[2] == "loop"))
for i, r in enumerate(results):
    def outcome(r=r):
        if isinstance(r, BaseException):
            raise r
        return r
    report(f"caller{i}", outcome)
report("took", lambda: round(took, 3))
async def later():
    return await allm.acreate_completion("Once", max_tokens=1)
report("after", lambda: asyncio.run(later()))
report("twice", lambda: allm.close())
'''


def test_close_with_requests_in_flight_raises_closed_error_for_each(stories260k: Path) -> None:
    for where, hand_on in (("thread", "before"), ("loop", "before"), ("thread", "overlap")):
        child = Child(CLOSE_IN_FLIGHT, str(stories260k), where, hand_on, timeout=60)
        for i in range(5):
            raised(child[f"caller{i}"], "ClosedError", naming=("closed",))
        assert float(child["took"].message) < 2.0, where
        raised(child["after"], "ClosedError", naming=("closed",))
        assert child["twice"].name == "OK"


TWO_LOOPS = r'''
import asyncio, threading
from llama_binding import AsyncLlama

allm = AsyncLlama(sys.argv[1], n_seq_max=4, n_ctx=2048, n_threads=1)
PROMPTS = ["Once upon a time", "The little dog", "Lily and Tom", "One day, a boy"]

async def texts():
    rs = await asyncio.gather(*[allm.acreate_completion(p, max_tokens=32, temperature=0.0) for p in PROMPTS])
    return [r["choices"][0]["text"] for r in rs]

want = asyncio.run(texts())
wrong = []
for rep in range(3):
    allm.engine.vocab._piece_cache.clear()  # the pieces are made again, from both loops at once
    out = [None, None]
    def run(i):
        out[i] = asyncio.run(texts())
    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    wrong += [(rep, i, o) for i, o in enumerate(out) if o != want]
report("texts", lambda: all(len(t) > 20 for t in want))
report("wrong", lambda: wrong)
report("outstanding", lambda: allm.n_outstanding)
allm.close()
'''


def test_two_event_loops_get_the_single_loop_text(stories260k: Path) -> None:
    child = Child(TWO_LOOPS, str(stories260k), timeout=240)  # generous: a loaded CI machine
    assert child["texts"].message == "True"
    assert child["wrong"].message == "[]"
    assert child["outstanding"].message == "0"


def test_cancelled_requests_leave_nothing_behind(stories260k: Path) -> None:
    """A quick bounded version of the leak loop (500 cancelled requests in the fuzzing run):
    every cancelled request's ticket, slot and sampler chain is released."""

    async def main(allm: AsyncLlama) -> None:
        for rnd in range(4):
            tasks = [asyncio.ensure_future(allm.acreate_completion(
                "Once upon a time", max_tokens=200, temperature=0.7 if i % 2 else 0.0, seed=i))
                for i in range(25)]
            await asyncio.sleep(0.01 * rnd)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for _ in range(500):  # the engine thread handles the cancels
            if not allm.n_outstanding and not allm.scheduler.busy:
                break
            await asyncio.sleep(0.01)

    allm = AsyncLlama(stories260k, n_seq_max=4, n_ctx=1024, n_threads=1)
    try:
        asyncio.run(main(allm))
        assert allm.n_outstanding == 0
        assert not allm.scheduler.busy
        r: Any = asyncio.run(_one(allm))
        assert r["usage"]["completion_tokens"] == 4
    finally:
        allm.close()


async def _one(allm: AsyncLlama) -> Any:
    return await allm.acreate_completion("Once upon a time", max_tokens=4, temperature=0.0)
