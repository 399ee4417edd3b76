#!/usr/bin/env bash
# Where the GPU decode gap to llama-bench comes from: bench/gpu_probe.py's loop variants and
# llama-bench's tg128 @ d512 on the synthetic 1B Q4_K_M model. PROBE_ENVS lists environments
# to run both under (graph reuse off, CUDA graphs off, OpenMP waiting passively, ...);
# PROBE_ARGS are extra arguments of the probe, BENCH_VARIANTS llama-bench's argument sets
# separated by ';'; DECODE_THREADS lists --threads values for
# bench/decode.py runs after the probes (empty: none).
#   device run, carry [".carry"]:  bash bench/gpu_probe.sh
source bench/gpu_env.sh
# llama-bench's loop in C with timers, as a program and as a library the probe calls
[ -d vendor/llama.cpp/include ] || tar xzf .carry/llama.cpp.tar.gz -C vendor
LIB=$W/pkg/llama_binding/lib
for kind in "-o $W/decode_loop" "-shared -fPIC -o $W/decode_loop.so"; do
    gcc -O2 $kind bench/native/decode_loop.c -Ivendor/llama.cpp/include -Ivendor/llama.cpp/ggml/include \
        -L$LIB -lllama -lggml-cpu -lggml -lggml-base -Wl,-rpath,$LIB || exit 1
done
export LB_PROBE_LOOP_LIB=$W/decode_loop.so
BENCH="$W/pkg/llama_binding/bin/llama-bench -m $MODEL -ngl 99 -fa 1 -p 0 -n 128 -d 512 -r 5 -o csv"
for env in ${PROBE_ENVS:-X=0 LLAMA_GRAPH_REUSE_DISABLE=1 GGML_CUDA_DISABLE_GRAPHS=1}; do
    echo "== $env"
    env $env python3 bench/gpu_probe.py $MODEL --reps 3 ${PROBE_ARGS:-} 2>&1 \
        | grep -v "^llama\|^load\|^print_info" | tee "$OUT/probe-${env%%=*}.txt"
    for c in ${CLOOP_CTX:-656}; do env $env $W/decode_loop $MODEL $c | tee -a "$OUT/probe-${env%%=*}.txt"; done
    IFS=';' read -ra variants <<< "${BENCH_VARIANTS:- }"
    for b in "${variants[@]}"; do
        echo "llama-bench $b: $(env $env $BENCH $b 2>/dev/null | tail -1 | awk -F, '{print $(NF-1)}') t/s" \
            | tee -a "$OUT/probe-${env%%=*}.txt"
    done
done
for t in ${DECODE_THREADS:-}; do
    python3 bench/decode.py $MODEL --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on --threads $t \
        --json "$OUT/decode-t$t.json" 2>&1 | tee "$OUT/decode-t$t.txt" | tail -12
done
