#!/usr/bin/env bash
# P16 (and P14's CUDA worker) on the GPU machine, the synthetic 1B Q4_K_M, every layer
# offloaded, flash attention on. PARTS (a comma list, default decode,batched,spec):
#   decode:  bench/decode.py, greedy and sampled (t0.8, top-k 40, top-p 0.95) decode beside
#            llama-bench tg128, the cost of switching options, prefill after decoding;
#   batched: bench/batched.py, AsyncLlama at 16 and 64 streams, greedy and t0.8, beside
#            llama-batched-bench's S_TG;
#   spec:    bench/speculative_vs_llama.py, ours beside llama-speculative-simple and
#            llama-lookup of the same build (self-draft: equal acceptance; n-gram lookup);
#   server:  bench/server_vs_llama_server.py at 16 and 64 clients, greedy and t0.8;
#   rpc:     bench/rpc.py, a CUDA worker (another process, through the relay) against the
#            model on the GPU in the client.
#   device run, carry [".carry"]:  PARTS=decode,batched,spec bash bench/gpu_p16.sh
export LLAMA_BINDING_SERVER_TOOL=ON
source bench/gpu_env.sh
PARTS=",${PARTS:-decode,batched,spec},"
if [[ $PARTS == *,rpc,* ]]; then
    echo "=== bench/rpc.py: CUDA worker vs local CUDA"
    { echo "command: python3 bench/rpc.py $MODEL --device CUDA0 --local-ngl -1 --n-prompt 512 --n-gen 128 --threads 16"
      timeout 300 python3 bench/rpc.py "$MODEL" --device CUDA0 --local-ngl -1 --n-prompt 512 --n-gen 128 \
          --threads 16 2>&1; } | tee "$OUT/rpc-cuda.txt" | tail -8
fi
if [[ $PARTS == *,decode,* ]]; then
    echo "=== bench/decode.py"
    timeout 240 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
        --json "$OUT/decode.json" 2>&1 | tee "$OUT/decode.txt"
fi
if [[ $PARTS == *,batched,* ]]; then
    for t in 0.8 0; do
        echo "=== bench/batched.py temperature $t"
        timeout 200 python3 bench/batched.py --model "$MODEL" --ngl 99 --fa on --npl 16,64 --reps 2 \
            --temperature $t --json "$OUT/batched-t$t.json" 2>&1 | tee "$OUT/batched-t$t.txt"
    done
fi
if [[ $PARTS == *,spec,* ]]; then
    echo "=== bench/speculative_vs_llama.py"
    timeout ${SPEC_TIMEOUT:-300} python3 bench/speculative_vs_llama.py --model "$MODEL" --ngl 99 --fa on --threads 16 \
        --cases self,lookup --reps ${SPEC_REPS:-3} --max-tokens 256 --ignore-eos --json "$OUT/speculative_vs_llama.json" 2>&1 \
        | tee "$OUT/speculative_vs_llama.txt"
fi
if [[ $PARTS == *,server,* ]]; then
    python3 -c "import fastapi, uvicorn, sse_starlette, pydantic_settings" 2>/dev/null \
        || python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$W/site" .carry/whl/*.whl
    echo "=== bench/server_vs_llama_server.py"
    timeout 400 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients 16,64 \
        --modes greedy,t0.8 --seconds 10 --drain-timeout 60 --procs 4 \
        --json "$OUT/server_vs_llama_server.json" --log-dir "$OUT/logs" 2>&1 | tee "$OUT/server_vs_llama_server.txt"
fi
