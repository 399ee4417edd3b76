"""Runs Q4_0/Q4_1/Q8_0 tiny models through prefill (long prompts: the AMX tile path) and
decode on 1, 2 and all threads, each in its own process, and prints each exit status: a
signal there is the crash the AMX kernels caused on some Xeons. Used by bench/cpu_amx.sh.

    python bench/amx_stress.py [--threads 1,2,16]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

CHILD = r'''
import sys
from llama_binding import Llama
llm = Llama(sys.argv[1], n_ctx=512, n_threads=int(sys.argv[2]), n_threads_batch=int(sys.argv[2]),
            n_gpu_layers=0)
prompt = " ".join(["Once upon a time there was a little girl named Lily."] * 20)
out = llm.create_completion(prompt, max_tokens=16, temperature=0.0)
print(out["usage"]["prompt_tokens"], out["usage"]["completion_tokens"])
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", default=f"1,2,{os.cpu_count()}")
    args = ap.parse_args()
    from _tinymodel import TinySpec, write_tiny_llama

    from llama_binding import capi

    folder = Path(tempfile.mkdtemp())
    src = write_tiny_llama(folder / "f32.gguf", TinySpec(n_embd=256, n_ff=512, tied_embeddings=False, seed=3))
    for name, ftype in (("Q4_0", 2), ("Q4_1", 3), ("Q8_0", 7)):
        dst = folder / f"{name}.gguf"
        params = capi.llama_model_quantize_default_params()
        params.ftype = ftype
        capi.llama_model_quantize(os.fsencode(src), os.fsencode(dst), ctypes.byref(params))
        for n in args.threads.split(","):
            proc = subprocess.run([sys.executable, "-c", CHILD, str(dst), n], capture_output=True, text=True,
                                  timeout=300)
            rc = proc.returncode
            how = f"killed by {signal.Signals(-rc).name}" if rc < 0 else f"exit {rc}"
            tail = proc.stdout.strip().splitlines()[-1:] if rc == 0 else proc.stderr.strip().splitlines()[-2:]
            print(f"{name} threads {n:>3}: {how}  {' | '.join(tail)}")


if __name__ == "__main__":
    main()
