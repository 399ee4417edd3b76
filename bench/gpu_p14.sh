#!/usr/bin/env bash
# P13 and P14 on the GPU machine. P13: the multimodal tests with the model offloaded and
# the projector on the GPU (bench/gpu_p13.sh). P14: a CUDA RPC worker (llama-binding
# rpc-server --device CUDA0, another process) serving the synthetic 1B model to a client,
# against the same model loaded on the GPU in the client (bench/rpc.py), and the RPC tests.
#   device run, carry [".carry"]:  bash bench/gpu_p14.sh
source bench/gpu_env.sh
bash bench/gpu_p13.sh
echo "=== tests/test_rpc.py (CPU workers on loopback, CUDA build)"
timeout 300 python3 -m pytest -q -rs tests/test_rpc.py -k "not split and not namespace" 2>&1 | tail -5
echo "=== bench/rpc.py: CUDA worker vs local CUDA"
{ echo "command: python3 bench/rpc.py $MODEL --device CUDA0 --local-ngl -1 --n-prompt 512 --n-gen 128 --threads 16"
  timeout 400 python3 bench/rpc.py "$MODEL" --device CUDA0 --local-ngl -1 --n-prompt 512 --n-gen 128 \
      --threads 16 2>&1; } | tee "$OUT/rpc-cuda.txt" | tail -8
