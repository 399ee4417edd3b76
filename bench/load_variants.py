"""Crash probe: load a model after `import numpy`, with one loader variant.

Usage: python bench/load_variants.py MODEL.gguf VARIANT
VARIANT: plain | preload_stdcxx | deepbind | ours_first
"""

from __future__ import annotations

import ctypes
import os
import sys

path, variant = sys.argv[1], sys.argv[2]
if variant == "ours_first":
    import llama_binding

    llama_binding.system_info()
import numpy  # noqa: E402,F401

if variant == "preload_stdcxx":
    ctypes.CDLL("libstdc++.so.6", mode=ctypes.RTLD_GLOBAL)
from llama_binding.capi import _loader  # noqa: E402

if variant != "preload_stdcxx":
    _loader._preload_runtime = lambda: None  # type: ignore[assignment]  # probe the build alone
if variant == "deepbind":
    def _deep(p: object) -> ctypes.CDLL:
        return ctypes.CDLL(str(p), mode=os.RTLD_NOW | os.RTLD_DEEPBIND)
    _loader._dlopen = _deep  # type: ignore[assignment]
with open("/proc/self/maps") as fh:
    libs = sorted({line.split()[-1] for line in fh if "libstdc++" in line or "libgomp" in line})
print(variant, "before load:", libs, flush=True)
import llama_binding  # noqa: E402
from llama_binding import capi  # noqa: E402

llama_binding.system_info()
params = capi.llama_model_default_params()
params.n_gpu_layers = 0
model = capi.llama_model_load_from_file(path.encode(), params)
print(variant, "loaded", bool(model), flush=True)
