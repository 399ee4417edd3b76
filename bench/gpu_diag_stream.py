"""Diagnose: after closing a stream on the GPU, is the Llama's lock released? (device only)"""

from __future__ import annotations

import gc
import sys
import traceback

from llama_binding import Llama

llm = Llama(sys.argv[1], n_ctx=256)
it = llm("Once upon a time", max_tokens=8, stream=True)
first = next(it)
print("first chunk:", first["choices"][0])
frame = it.gi_frame  # type: ignore[attr-defined]
inner = frame.f_locals.get("chunks") if frame is not None else None
print("inner generator:", inner, "running frame:", getattr(inner, "gi_frame", None))
it.close()  # type: ignore[attr-defined]
print("owner after close:", llm._owner, "lock held:", llm._lock.locked())
if inner is not None:
    print("inner frame after close:", inner.gi_frame)
    for ref in gc.get_referrers(inner):
        print("  referrer:", type(ref), str(ref)[:200])
try:
    print(llm("again", max_tokens=1)["usage"])
except Exception:
    traceback.print_exc()
