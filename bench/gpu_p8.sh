#!/usr/bin/env bash
# P8 on the GPU machine: the robustness tests that touch the GPU paths (the checked native
# sampling with backend-sampled tokens, close() and streams under the guard with the decode
# running ahead, AsyncLlama close), then the decode benchmark (synthetic 1B Q4_K_M, every
# layer offloaded, flash attention on) to show the hot loop kept its speed.
#   device run, carry [".carry"]:  bash bench/gpu_p8.sh
source bench/gpu_env.sh
tar xzf .carry/models.tgz -C vendor
PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry timeout ${TEST_S:-150} python3 -m pytest -q \
    tests/test_robust_sampling.py tests/test_threads.py tests/test_aio_robust.py tests/test_llama.py \
    tests/test_batched_completion.py tests/generation/test_steps.py > "$OUT/pytest-gpu-p8.txt" 2>&1
tail -15 "$OUT/pytest-gpu-p8.txt"
python3 bench/decode.py $MODEL --prompt 512 --gen 128 --reps ${REPS:-3} --ngl 99 --fa on \
    --backend-sampling auto --json "$OUT/decode-gpu-p8.json" 2>&1 | tee "$OUT/decode-gpu-p8.txt" | tail -12
