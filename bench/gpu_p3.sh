#!/usr/bin/env bash
# P3 on the GPU machine: GPU tests of the Llama facade, then the decode benchmark on a
# synthetic Llama-3.2-1B-shaped model (random weights, Llama-3 BPE vocabulary, 16 layers,
# n_embd 2048, GQA 32/8, n_ff 8192) quantized to Q4_K_M with the same build's llama-quantize,
# every layer offloaded, flash attention on; with backend sampling (auto) and without.
#   device run, carry [".carry"]:  bash bench/gpu_p3.sh
#   (in two calls within 600 s each: SKIP_BENCH=1 bash bench/gpu_p3.sh; SKIP_TESTS=1 bash bench/gpu_p3.sh;
#    BS_RUNS lists the decode.py runs' --backend-sampling arguments, separated by ';')
source bench/gpu_env.sh
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    # the facade's tests with every layer on the GPU (stories260K from the carry)
    PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry python3 -m pytest -q \
        -k "not infill" tests/test_llama.py tests/test_llama_hooks.py tests/generation \
        > "$OUT/pytest-gpu.txt" 2>&1
    tail -5 "$OUT/pytest-gpu.txt"
    python3 bench/gpu_sampling_check.py $MODEL 2>&1 | tee "$OUT/gpu-sampling-check.txt"
fi
[ "${SKIP_BENCH:-0}" = 1 ] && exit 0
IFS=';' read -ra runs <<< "${BS_RUNS:-auto;off;auto --outputs-per-seq 1}"
for run in "${runs[@]}"; do
    name=$(echo "bs-$run" | tr -d ' -' )
    python3 bench/decode.py $MODEL --prompt 512 --gen 128 --reps ${REPS:-3} --ngl 99 --fa on \
        --backend-sampling $run --json "$OUT/decode-gpu-llama1b-q4km-$name.json" 2>&1 \
        | tee "$OUT/decode-gpu-llama1b-q4km-$name.txt" | tail -12
done
