#!/usr/bin/env bash
# P7 on the GPU machine: bench/batched.py (AsyncLlama, streaming to every caller) beside
# llama-batched-bench on the synthetic Llama-3.2-1B-shaped Q4_K_M model (bench/gpu_model.sh),
# every layer offloaded, flash attention on, prompt 128, 128 generated tokens, 1/4/16/64 callers;
# then bench/check_batched_greedy.py (host argmax and backend greedy pick the same tokens on
# the GPU) and the batching tests that need no real model (BENCH=0, TESTS=0 skip a part).
#   device run, carry [".carry"]:  bash bench/gpu_p7.sh
#   GREEDY=host1,host,backend compares the ways of taking greedy tokens (default: auto);
#   TEMP=0.8 samples instead (host1: the chains on one thread); CHECK=0 skips the check
source bench/gpu_env.sh
if [ "${BENCH:-1}" != 0 ]; then
    python3 bench/batched.py --model $MODEL --ngl 99 --fa on --npl ${NPL:-1,4,16,64} --reps ${REPS:-3} \
        --greedy ${GREEDY:-auto} --temperature ${TEMP:-0} --json "$OUT/batched-gpu-llama1b-q4km.json" 2>&1 \
        | tee "$OUT/batched-gpu-llama1b-q4km.txt"
    [ "${CHECK:-1}" = 0 ] || python3 bench/check_batched_greedy.py --model $MODEL --ngl 99 2>&1 | tail -3 | tee "$OUT/check-batched-greedy.txt"
fi
if [ "${TESTS:-1}" != 0 ]; then  # SmolLM2 is not carried: its tests skip
    PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry python3 -m pytest -q -rs tests/generation/test_batching.py \
        tests/test_aio.py tests/test_batched_completion.py > "$OUT/gpu-tests-p7.txt" 2>&1
    tail -8 "$OUT/gpu-tests-p7.txt"
fi
