"""The event loop's cost per streamed token in AsyncLlama, without a model's decode.

    python bench/aio_overhead.py [--callers 64] [--steps 128]

A thread stands in for the engine: each "step" it hands one token per caller to the loop
(exactly as AsyncLlama's worker does), and every caller consumes an OpenAI chunk stream
(detokenizing, stop matching, chunk dicts). Prints the loop thread's CPU time per token: at
64 callers on a GPU a decode step lasts about 7 ms, and this work must fit beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from llama_binding import AsyncLlama, shapes
from llama_binding.aio import _dispatch, _Ticket
from llama_binding.generation.batching import BatchRequest

MODEL = Path(__file__).resolve().parents[2] / "shared/models/stories260K.gguf"


async def measure(allm: AsyncLlama, callers: int, steps: int) -> float:
    loop = asyncio.get_running_loop()
    tickets = [_Ticket(BatchRequest([1], steps), loop, asyncio.Queue()) for _ in range(callers)]
    cpu: list[float] = []

    async def consume(t: _Ticket) -> None:
        chunker = shapes.CompletionChunker(shapes.Meta("id", 0, "m"), allm.engine.token_text, 1)
        async for _ in shapes.acompletion_chunks(chunker, allm._chunks([t], ["never"]), False):
            pass

    def engine() -> None:
        toks = [300 + i % 100 for i in range(steps)]
        for s in range(steps):
            items = [(t, toks[s]) for t in tickets]
            if s == steps - 1:
                for t in tickets:
                    t.request.phase = "done"
                    t.request.finish_reason = "length"
                items += [(t, None) for t in tickets]
            loop.call_soon_threadsafe(_dispatch, items)
            time.sleep(0.002)  # a decode's worth of time, so the loop keeps up step by step

    tasks = [asyncio.ensure_future(consume(t)) for t in tickets]
    t0 = time.thread_time()
    th = threading.Thread(target=engine)
    th.start()
    await asyncio.gather(*tasks)
    cpu.append(time.thread_time() - t0)
    th.join()
    return cpu[0] / (callers * steps) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--callers", type=int, default=64)
    ap.add_argument("--steps", type=int, default=128)
    args = ap.parse_args()
    allm = AsyncLlama(MODEL, n_seq_max=1, n_ctx=256)
    try:
        runs = [asyncio.run(measure(allm, args.callers, args.steps)) for _ in range(3)]
    finally:
        allm.close()
    print(f"{args.callers} callers x {args.steps} tokens: loop thread CPU "
          f"{min(runs):.1f} us per token (runs: {', '.join(f'{r:.1f}' for r in runs)})")


if __name__ == "__main__":
    main()
