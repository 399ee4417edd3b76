#!/usr/bin/env bash
# P12 on the GPU machine: n_gpu_layers="auto" (tests/test_gpu_fit.py with a budget of about
# half the synthetic 1B model: the chosen count loads and runs, one more layer would not
# fit), then the command line on the GPU: `info` (memory the context would take), `run`
# with the default n_gpu_layers=auto, and `bench` beside llama-bench of the same build.
#   device run, carry [".carry"]:  bash bench/gpu_p12.sh
source bench/gpu_env.sh
export PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry
echo "=== tests/test_gpu_fit.py on $MODEL"
LLAMA_BINDING_GPU_TEST_MODEL=$MODEL timeout 300 python3 -m pytest -q -p no:cacheprovider -rs \
    tests/test_gpu_fit.py 2>&1 | tee "$OUT/pytest-gpu-fit.txt" | tail -15
echo "=== info"
python3 -m llama_binding info "$MODEL" --n-ctx 4096 2>&1 | tee "$OUT/info.txt" | tail -12
echo "=== run (n_gpu_layers auto)"
python3 -m llama_binding run "$MODEL" "Once upon a time" --raw -n 16 --temperature 0 2>&1 | tail -3
echo "=== bench"
python3 -m llama_binding bench "$MODEL" --flash-attn on 2>&1 | tee "$OUT/cli-bench.txt" | tail -12
