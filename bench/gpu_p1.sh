#!/usr/bin/env bash
# The CUDA build and its checks, run on the lent GPU machine (no network there).
#
# Prepare here, once (files under .carry/ are git-ignored and travel with `carry`):
#   bash bench/prepare_carry.sh
# Then on the device:  bash bench/gpu_p1.sh     (results land in $OUT; copy them to
# bench/results/).
set -uo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
L="$W/pkg/llama_binding/lib"
M=.carry/stories260K.gguf
{
echo "== libstdc++ internals exported by libggml-cuda, and what libllama lists as NEEDED"
nm -D --defined-only "$L/libggml-cuda.so" | grep -c -E " T _ZNKSt19__codecvt| T _ZNSo9_M_insert" || true
readelf -d "$L/libllama.so" | grep NEEDED
echo "== numpy imported first: without the loader's libstdc++ preload (crashes), then as shipped"
for v in plain preload_stdcxx; do
  timeout 60 python3 bench/load_variants.py $M $v 2>&1 | grep -v "^  File\|^$" | tail -2; echo "rc=$? $v"
done
} > "$OUT/gpu-crash-check.txt" 2>&1
cat "$OUT/gpu-crash-check.txt"
(cd /tmp && python3 "$OLDPWD/bench/gpu_check.py" "$OLDPWD/$M" "$OUT/gpu-check.json") | tail -30
"$W/pkg/llama_binding/bin/llama-bench" -m $M -ngl 99 -p 64 -n 32 -r 3 > "$OUT/llama-bench-stories260k.txt" 2>&1
tail -4 "$OUT/llama-bench-stories260k.txt"
# the generator tests need libclang, which the GPU image lacks; everything that loads the
# library runs here, on the CUDA build
PIP_RETRIES=0 PIP_TIMEOUT=3 LLAMA_BINDING_MODELS=.carry python3 -m pytest -q tests/test_foundation.py \
    tests/core tests/generation tests/test_examples.py tests/capi/test_calls.py tests/capi/test_lazy.py \
    > "$OUT/pytest-gpu.txt" 2>&1
tail -15 "$OUT/pytest-gpu.txt"
