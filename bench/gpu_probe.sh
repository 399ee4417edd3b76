#!/usr/bin/env bash
# Where the GPU decode gap to llama-bench comes from: bench/gpu_probe.py's loop variants and
# llama-bench's tg128 @ d512 on the synthetic 1B Q4_K_M model, as built, with llama.cpp's
# graph reuse disabled, and with CUDA graphs disabled; then one bench/decode.py run.
#   device run, carry [".carry"]:  bash bench/gpu_probe.sh
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
source bench/gpu_model.sh
BENCH="$W/pkg/llama_binding/bin/llama-bench -m $MODEL -ngl 99 -fa 1 -p 0 -n 128 -d 512 -r 5 -o csv"
for env in "X=0" "LLAMA_GRAPH_REUSE_DISABLE=1" "GGML_CUDA_DISABLE_GRAPHS=1"; do
    echo "== $env"
    env $env python3 bench/gpu_probe.py $MODEL --reps 3 2>&1 \
        | grep -v "^llama\|^load\|^print_info" | tee "$OUT/probe-${env%%=*}.txt"
    env $env $BENCH 2>/dev/null | tail -1 | tee -a "$OUT/probe-${env%%=*}.txt"
done
[ "${SKIP_DECODE:-0}" = 1 ] && exit 0
python3 bench/decode.py $MODEL --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
    --json "$OUT/decode.json" 2>&1 | tee "$OUT/decode.txt" | tail -12
