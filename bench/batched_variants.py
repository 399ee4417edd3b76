"""bench/batched.py under variants of AsyncLlama's GIL hand-offs, one process each:

    python bench/batched_variants.py VARIANT -- <bench/batched.py arguments>

VARIANT: base (as shipped); handoff0 (a caller that wakes the idle worker does not sleep
to hand it the GIL); switch (sys.setswitchinterval(0.0005), as the server sets it).
For finding why a step's decode takes longer in one process than llama-batched-bench's.
"""

import runpy
import sys
from pathlib import Path

variant, rest = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
if variant == "handoff0":
    import llama_binding.aio as aio

    aio._HANDOFF_S = 0.0
elif variant == "switch":
    sys.setswitchinterval(0.0005)
elif variant != "base":
    raise SystemExit(f"unknown variant {variant!r}")
print(f"=== variant {variant}", flush=True)
sys.argv = [str(Path(__file__).with_name("batched.py")), *rest]
runpy.run_path(sys.argv[0], run_name="__main__")
