"""Memory growth over long loops, the figures P8 asks to keep near zero: load/close cycles,
completions on one Llama, cancelled AsyncLlama requests. Each loop warms up first, then
prints the resident memory it added (ru_maxrss is a peak; the current RSS is read from
/proc/self/statm).

    python bench/leaks.py ../shared/models/stories260K.gguf [--loads 300 --completions 2000 --cancels 500]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import time

from llama_binding import AsyncLlama, Llama

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    gc.collect()
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE / 2**20


def report(name: str, n: int, before: float, started: float) -> None:
    grew = rss_mb() - before
    print(f"{name:<28} {n:>5} times  RSS {grew:+.2f} MB  ({time.perf_counter() - started:.1f} s)")


def loads(path: str, n: int) -> None:
    for _ in range(5):
        Llama(path, n_ctx=128, n_threads=1).close()
    before, t = rss_mb(), time.perf_counter()
    for _ in range(n):
        llm = Llama(path, n_ctx=128, n_threads=1)
        llm.create_completion("Once", max_tokens=2)
        llm.close()
    report("load, complete, close", n, before, t)


def completions(path: str, n: int) -> None:
    llm = Llama(path, n_ctx=256, n_threads=1)
    for i in range(20):
        llm.create_completion("Once upon a time", max_tokens=8, seed=i, temperature=0.8)
    before, t = rss_mb(), time.perf_counter()
    for i in range(n):
        if i % 2:
            llm.create_completion("Once upon a time", max_tokens=8, seed=i, temperature=0.8)
        else:
            for _ in llm.create_completion("One day", max_tokens=8, stream=True):
                pass
    report("completions (half streamed)", n, before, t)
    llm.close()


async def _cancels(allm: AsyncLlama, n: int) -> None:
    async def one(i: int) -> None:
        task = asyncio.ensure_future(allm.acreate_completion("Once upon a time", max_tokens=64, seed=i))
        await asyncio.sleep(0.001)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    for i in range(n):
        await one(i)


def cancels(path: str, n: int) -> None:
    allm = AsyncLlama(path, n_seq_max=4, n_ctx=512, n_threads=1)
    asyncio.run(_cancels(allm, 20))
    before, t = rss_mb(), time.perf_counter()
    asyncio.run(_cancels(allm, n))
    report("cancelled async requests", n, before, t)
    allm.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("--loads", type=int, default=300)
    ap.add_argument("--completions", type=int, default=2000)
    ap.add_argument("--cancels", type=int, default=500)
    args = ap.parse_args()
    loads(args.model, args.loads)
    completions(args.model, args.completions)
    cancels(args.model, args.cancels)


if __name__ == "__main__":
    main()
