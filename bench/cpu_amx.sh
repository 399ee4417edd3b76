#!/usr/bin/env bash
# The CPU build on an AMX machine (the H200 host is an Emerald Rapids Xeon with AMX under
# KVM): first with ggml's AMX kernels compiled in (-DLLAMA_BINDING_CPU_AMX=ON), to show that
# the quantized-model test catches their crash; then the default build (AMX kernels left
# out), with the whole test suite. No GPU is used. Needs .carry from bench/prepare_carry.sh
# plus .carry/models.tgz (the vocab GGUFs of vendor/llama.cpp/models).
#   device run, carry [".carry"]:  bash bench/cpu_amx.sh
set -uo pipefail
export PYTHONUNBUFFERED=1 PIP_NO_INDEX=1 GGML_NO_BACKTRACE=1
OUT=${OUT:-bench/results}
W=/tmp/lbcpu
mkdir -p "$W" "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .carry/whl/*.whl
mkdir -p vendor && tar xzf .carry/llama.cpp.tar.gz -C vendor && tar xzf .carry/models.tgz -C vendor
{ lscpu | grep -E "Model name|Model:|Hypervisor"; grep -o -w 'amx[a-z_0-9]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo; } \
    | tee "$OUT/cpu.txt"

build() {  # $1: folder, $2: CMAKE_ARGS
    local start=$(date +%s)
    CMAKE_ARGS="$2" CMAKE_BUILD_PARALLEL_LEVEL=16 LLAMA_BINDING_TOOLS=${TOOLS:-OFF} \
        python3 -m pip install --no-build-isolation --no-deps -v --target "$W/$1" \
        -Cbuild-dir="$W/build" . > "$W/$1.log" 2>&1 || { tail -60 "$W/$1.log"; exit 1; }
    grep -E "llama-binding:" "$W/$1.log" | sed 's/^ *//' | sort -u
    echo "build $1: $(( $(date +%s) - start )) s"
}
export PYTHONPATH="$PWD:$W/site" LLAMA_BINDING_MODELS="$PWD/.carry"

echo "=== 1. AMX kernels compiled in (-DLLAMA_BINDING_CPU_AMX=ON)"
build amx "-DLLAMA_BINDING_CPU_AMX=ON"
export LLAMA_BINDING_LIB_DIR="$W/amx/llama_binding/lib"
python3 -c "from llama_binding import system_info; print(system_info().llama_cpp)"
amx_count() { objdump -d --no-show-raw-insn "$1"/llama_binding/lib/libggml-cpu*.so \
    | grep -cE "\s(ldtilecfg|tilezero|tileloadd|tdpbssd|tdpbusd|tdpbf16ps)\s"; }
echo "AMX instructions in libggml-cpu: $(amx_count "$W/amx")"
timeout 300 python3 -m pytest -q -p no:randomly tests/test_cpu_kernels.py 2>&1 | tee "$OUT/amx-on.txt" | tail -4
timeout 300 python3 bench/amx_stress.py 2>/dev/null | grep threads

echo "=== 2. the default build (AMX kernels left out)"
build default "-DLLAMA_BINDING_CPU_AMX=OFF"
export LLAMA_BINDING_LIB_DIR="$W/default/llama_binding/lib"
python3 -c "from llama_binding import system_info; print(system_info().llama_cpp)"
echo "AMX instructions in libggml-cpu: $(amx_count "$W/default")"
timeout 300 python3 -m pytest -q tests/test_cpu_kernels.py 2>&1 | tee "$OUT/amx-off.txt" | tail -4
timeout 300 python3 bench/amx_stress.py 2>/dev/null | grep threads
start=$(date +%s)
timeout ${SUITE_S:-420} python3 -m pytest -q -x --deselect tests/capi/test_drift.py --deselect tests/capi/test_abi.py ${SUITE:-} 2>&1 \
    | tee "$OUT/suite-default.txt" | tail -40
echo "suite: $(( $(date +%s) - start )) s"
