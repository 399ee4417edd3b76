#!/usr/bin/env bash
# The CUDA build and its checks, run on the lent GPU machine (no network there).
#
# Prepare here, once (files under .carry/ are git-ignored and travel with `carry`):
#   bash bench/prepare_carry.sh
# Then on the device:  bash bench/gpu_p1.sh     (results land in $OUT, copy them to
# bench/results/).
set -euo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb                      # build outside the repo copy: it may be wiped between calls
mkdir -p "$W" "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .carry/whl/*.whl
export PYTHONPATH="$W/site"
mkdir -p vendor && tar xzf .carry/llama.cpp.tar.gz -C vendor
mkdir -p vendor/llama.cpp/models && cp .carry/ggml-vocab-llama-spm.gguf vendor/llama.cpp/models/
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv"
nvcc --version | tail -2 >> "$OUT/nvidia-smi.csv"

start=$(date +%s)
CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" LLAMA_BINDING_TOOLS=ON \
CMAKE_BUILD_PARALLEL_LEVEL=16 \
python3 -m pip install --no-build-isolation --no-deps -v --target "$W/pkg" \
    -Cbuild-dir="$W/build" . > "$W/cuda-build.log" 2>&1 || { tail -80 "$W/cuda-build.log"; exit 1; }
end=$(date +%s)
grep -E "Including|shipping|CUDA Toolkit|CMAKE_CUDA_ARCH" "$W/cuda-build.log" | head -20 > "$OUT/cuda-build-summary.txt" || true
echo "cuda_build_wall_s=$((end - start)) (pip install of the package with LLAMA_BINDING_TOOLS=ON, 16 jobs)" \
    | tee -a "$OUT/cuda-build-summary.txt"
ls -la "$W/pkg/llama_binding/lib" "$W/pkg/llama_binding/bin" | tee -a "$OUT/cuda-build-summary.txt"

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
