#!/usr/bin/env bash
# P7 on the GPU machine: bench/batched.py (AsyncLlama, streaming to every caller) beside
# llama-batched-bench on the synthetic Llama-3.2-1B-shaped Q4_K_M model (bench/gpu_model.sh),
# every layer offloaded, flash attention on, prompt 128, 128 generated tokens, 1/4/16/64 callers.
#   device run, carry [".carry"]:  bash bench/gpu_p7.sh
source bench/gpu_env.sh
python3 bench/batched.py --model $MODEL --ngl 99 --fa on --npl ${NPL:-1,4,16,64} --reps ${REPS:-3} --greedy ${GREEDY:-host} \
    --json "$OUT/batched-gpu-llama1b-q4km.json" 2>&1 | tee "$OUT/batched-gpu-llama1b-q4km.txt"
