#!/usr/bin/env bash
# Diagnose a crash of model loading under pytest on the CUDA build (the same load in a
# plain process works): which difference of the pytest process matters, and where.
set -uo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
R="$OUT/gpu-diag.txt"
export LLAMA_BINDING_MODELS=.carry PIP_RETRIES=0 PIP_TIMEOUT=3
M=.carry/stories260K.gguf
T=tests/core/test_core.py::test_greedy_matches_reference_text
{
ldd "$W/pkg/llama_binding/lib/libggml-cpu.so" | grep -E "gomp|omp" ; echo "---"
timeout 60 python3 bench/load_one.py $M 0; echo "rc=$? plain"
timeout 60 python3 bench/load_one.py $M 0 numpy; echo "rc=$? numpy first"
timeout 60 python3 bench/load_one.py $M 0 > /tmp/o.txt 2> /tmp/e.txt; echo "rc=$? fds to files"
timeout 60 python3 -c "import numpy.random; import runpy,sys; sys.argv=['x','$M','0']; runpy.run_path('bench/load_one.py')"; echo "rc=$? numpy.random first"
timeout 120 python3 -m pytest -q -x -s "$T" 2>&1 | tail -2; echo "rc=$? pytest -s"
timeout 120 python3 -m pytest -q -x --capture=sys "$T" 2>&1 | tail -2; echo "rc=$? pytest capture=sys"
timeout 120 python3 -m pytest -q -x "$T" 2>&1 | tail -2; echo "rc=$? pytest default"
echo "== gdb"
timeout 200 cuda-gdb -batch -ex run -ex bt --args python3 -m pytest -q -x -o cache_dir=/tmp/pc "$T" 2>&1 \
    | grep -v "^\[New Thread\|^\[Thread\|^\[Detaching" | grep -E "^#|signal|SIG" | head -40
} > "$R" 2>&1
cat "$R"
