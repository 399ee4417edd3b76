#!/usr/bin/env bash
# Diagnose the crash of tests/test_foundation.py::test_tiny_model_loads_and_frees_through_raw_c
# under pytest on the CUDA build (the same load in a plain process works).
set -uo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
R="$OUT/gpu-diag.txt"
export LLAMA_BINDING_MODELS=.carry PIP_RETRIES=0 PIP_TIMEOUT=3
T=tests/test_foundation.py::test_tiny_model_loads_and_frees_through_raw_c
{
echo "== alone"; timeout 120 python3 -m pytest -q -x "$T" 2>&1 | tail -3
echo "== no plugins"; PYTEST_DISABLE_PLUGIN_AUTOLOAD=1 timeout 120 python3 -m pytest -q -x "$T" 2>&1 | tail -3
echo "== no logging plugin"; timeout 120 python3 -m pytest -q -x -p no:logging "$T" 2>&1 | tail -3
echo "== modules"; timeout 120 python3 -c "
import sys; sys.argv=['pytest','-q','-x','$T']
import pytest
rc = pytest.main(['-q', '-x', '--co', '$T'])
print(sorted(m for m in sys.modules if m.split('.')[0] in {'torch','jax','cupy','triton','numba'})[:20])
"
echo "== gdb"; timeout 200 cuda-gdb -batch -ex run -ex bt --args python3 -m pytest -q -x -p no:cacheprovider "$T" 2>&1 \
    | grep -v "^\[New Thread\|^\[Thread\|^\[Detaching" | tail -45
} > "$R" 2>&1
cat "$R" | tail -90
echo "== all library tests but that one"
python3 -m pytest -q tests/test_foundation.py tests/core tests/generation tests/test_examples.py \
    tests/capi/test_calls.py tests/capi/test_lazy.py --deselect "$T" -p no:cacheprovider > "$OUT/pytest-gpu.txt" 2>&1
tail -15 "$OUT/pytest-gpu.txt"
