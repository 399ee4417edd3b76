#!/usr/bin/env bash
# P6 on the GPU machine: the speculative tests with every layer on the GPU, then
# bench/speculative.py on the synthetic Llama-3.2-1B-shaped Q4_K_M model (bench/gpu_model.sh),
# every layer offloaded, flash attention on: prompt lookup, and the model drafting for itself
# (every draft accepted: the upper bound of the verify mechanics; the draft costs as much as
# the target, so it cannot win on time).
#   device run, carry [".carry"]:  bash bench/gpu_p6.sh
source bench/gpu_env.sh
if [ "${SKIP_TESTS:-0}" != 1 ]; then
    PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry python3 -m pytest -q \
        tests/generation/test_speculative.py tests/generation/test_drafters.py \
        > "$OUT/pytest-gpu-speculative.txt" 2>&1
    tail -3 "$OUT/pytest-gpu-speculative.txt"
fi
# NUM_PRED lists the longest drafts to try (one run each)
for np in ${NUM_PRED:-16}; do
    python3 bench/speculative.py --model $MODEL --ngl 99 --fa on --cases ${CASES:-lookup,self} \
        --reps ${REPS:-3} --max-tokens ${MAX_TOKENS:-256} --num-pred $np \
        --json "$OUT/speculative-gpu-llama1b-q4km-np$np.json" 2>&1 | tee "$OUT/speculative-gpu-llama1b-q4km-np$np.txt"
done
