"""Load one GGUF through the raw C API and print what happened (a crash probe).

Usage: python bench/load_one.py MODEL.gguf N_GPU_LAYERS [no_host] [numpy]
"""

from __future__ import annotations

import sys

if "numpy" in sys.argv[3:]:
    import numpy  # noqa: F401

import llama_binding
from llama_binding import capi

path, ngl = sys.argv[1], int(sys.argv[2])
llama_binding.system_info()
params = capi.llama_model_default_params()
params.n_gpu_layers = ngl
if "no_host" in sys.argv[3:]:
    params.no_host = True
model = capi.llama_model_load_from_file(path.encode(), params)
print("loaded", bool(model), path, "ngl", ngl, flush=True)
if model:
    print("n_layer", capi.llama_model_n_layer(model), flush=True)
    capi.llama_model_free(model)
