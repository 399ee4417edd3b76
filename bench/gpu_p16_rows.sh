#!/usr/bin/env bash
# One time-boxed device call: how many sampled rows each host thread takes in a step
# (CAND_ROWS_PER_THREAD in native/step.c), A/B/C in one build, then n-gram lookup beside
# llama-lookup with more repetitions (its run-to-run spread at 256 tokens was 13%).
#   rows:  bench/engine_load.py at 64 clients, t0.8 (top-k 40, top-p 0.95), with 32 (the
#          default: two threads for 64 rows), 64 (one thread) and 16 (four) rows a thread;
#          only the native library is rebuilt between them (bench/gpu_build.sh). The figure
#          to compare is the engine's "collect" milliseconds a step (host work alone); its
#          t/s moves with the GPU's clocks as much as with this;
#   spec:  bench/speculative_vs_llama.py, n-gram lookup beside llama-lookup, 5 repetitions.
# The build skips llama-server (LLAMA_BINDING_SERVER_TOOL=OFF): nothing here needs it.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_rows.sh
D=${OUT:?set OUT to the output folder}
source bench/gpu_steps.sh  # the deadline starts now, before the build
export LLAMA_BINDING_SERVER_TOOL=OFF
OUT=/tmp/res
source bench/gpu_env.sh
cp "$OUT"/cuda-build-summary.txt "$D"/ 2>/dev/null
G=(--model "$MODEL" --ngl 99 --fa on)
for rows in 32 64 16; do
    sed -i "s/^#define CAND_ROWS_PER_THREAD [0-9]*/#define CAND_ROWS_PER_THREAD $rows/" native/step.c
    source bench/gpu_build.sh  # rebuilds only the native library when step.c changed
    step "engine-rows$rows" 60 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 \
        --temperature 0.8
done
step spec 120 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases lookup --reps 5 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
echo "done with $(left) s left"
