#!/usr/bin/env bash
# P15 on a machine with two GPUs (the nvidia-h200-x2 kind): the CUDA build, the synthetic 1B
# Q4_K_M (bench/gpu_model.sh), the two-GPU tests, then bench/multi_gpu.py (one GPU, split by
# layer, split by row, beside llama-bench -sm; AsyncLlama at 64 streams split by layer
# beside llama-batched-bench -sm layer). Not run yet: no two-GPU machine was lent so far.
#   device run, kind nvidia-h200-x2, carry [".carry"]:  bash bench/gpu_p15.sh
source bench/gpu_env.sh
nvidia-smi --query-gpu=index,name,memory.total --format=csv | tee "$OUT/gpus.csv"
echo "=== tests/test_multi_gpu.py"
timeout 300 python3 -m pytest -q -rs tests/test_multi_gpu.py 2>&1 | tee "$OUT/pytest-multi-gpu.txt" | tail -5
echo "=== bench/multi_gpu.py"
timeout 400 python3 bench/multi_gpu.py --model "$MODEL" --reps 3 --npl 64 --json "$OUT/multi_gpu.json" 2>&1 \
    | tee "$OUT/multi_gpu.txt"
