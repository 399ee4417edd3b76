#!/usr/bin/env bash
# Diagnose a crash of model loading after `import numpy` on the CUDA build.
set -uo pipefail
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
R="$OUT/gpu-diag.txt"
M=.carry/stories260K.gguf
L="$W/pkg/llama_binding/lib"
{
for v in plain preload_stdcxx deepbind ours_first; do
  timeout 60 python3 bench/load_variants.py $M $v 2>&1 | grep -v "^  File\|^$" | tail -3; echo "rc=$? $v"
done
echo "== exports of std:: weak symbols"
for f in "$L"/*.so; do echo "$(basename $f) $(nm -D --defined-only $f | grep -c ' [WVT] _ZNS[oti]\| [WVT] _ZNKS[oti]')"; done
nm -D --defined-only "$L/libggml-cuda.so" | grep -E "_M_insert|codecvt" | head -5
echo "== libllama needs"; readelf -d "$L/libllama.so" | grep -E "NEEDED|RUNPATH"
echo "== numpy"; python3 -c "import numpy, os; d=os.path.join(os.path.dirname(numpy.__file__), '..', 'numpy.libs'); print(numpy.__version__, numpy.__file__, os.listdir(d) if os.path.isdir(d) else 'no numpy.libs')"
gcc --version | head -1; nvcc --version | tail -1; ls /usr/lib/x86_64-linux-gnu/libstdc++.so.6*
} > "$R" 2>&1
cat "$R"
