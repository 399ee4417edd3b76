#!/usr/bin/env bash
# The CUDA build and its checks, run on the lent GPU machine (no network there).
#
# Prepare here, once (files under .carry/ are git-ignored and travel with `carry`):
#   bash bench/prepare_carry.sh
# Then on the device:  bash bench/gpu_p1.sh     (results land in $OUT, copy them to
# bench/results/).
set -euo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh

export PYTHONPATH="$W/pkg:$W/site"
cd /tmp  # import the installed package, not the repo copy
python3 "$OLDPWD/bench/gpu_check.py" "$OLDPWD/.carry/stories260K.gguf" "$OUT/gpu-check.json"
cd "$OLDPWD"
"$W/pkg/llama_binding/bin/llama-bench" -m .carry/stories260K.gguf -ngl 99 -p 64 -n 32 -r 3 \
    > "$OUT/llama-bench-stories260k.txt" 2>&1 || true
# the generator tests need libclang, which the GPU image lacks; everything that loads the
# library runs here, on the CUDA build
PIP_RETRIES=0 PIP_TIMEOUT=3 LLAMA_BINDING_MODELS=.carry python3 -m pytest -q tests/test_foundation.py \
    tests/core tests/generation tests/test_examples.py tests/capi/test_calls.py tests/capi/test_lazy.py \
    -v > "$OUT/pytest-gpu.txt" 2>&1 || { grep -n -E "PASSED|FAILED|ERROR|Fatal|File .*tests/" "$OUT/pytest-gpu.txt" | tail -40; exit 1; }
tail -5 "$OUT/pytest-gpu.txt"
