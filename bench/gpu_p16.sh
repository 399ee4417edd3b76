#!/usr/bin/env bash
# P16 (and P14's CUDA worker) on the GPU machine, the synthetic 1B Q4_K_M, every layer
# offloaded, flash attention on. PARTS (a comma list, default decode,batched,spec):
#   decode:  bench/decode.py, greedy and sampled (t0.8, top-k 40, top-p 0.95) decode beside
#            llama-bench tg128, the cost of switching options, prefill after decoding;
#   gap:     bench/decode_gap.py, where a single-stream decode's time goes (raw ctypes loop,
#            host argmax, lookahead, GPU-side greedy group, one CPU thread) beside llama-bench;
#   decode8b: the same on the Llama-3.1-8B-shaped model (written first: bench/gpu_model.sh);
#   batched: bench/batched.py, AsyncLlama at 16 and 64 streams, greedy and t0.8, beside
#            llama-batched-bench's S_TG;
#   spec:    bench/speculative_vs_llama.py, ours beside llama-speculative-simple and
#            llama-lookup of the same build (self-draft: equal acceptance; n-gram lookup);
#   server:  bench/server_vs_llama_server.py at 16 and 64 clients, greedy and t0.8;
#   engine:  bench/engine_load.py, the server's workload on AsyncLlama without HTTP (16 and 64
#            closed-loop clients, greedy and t0.8) with the engine's decodes split by kind
#            (ENGINE_EXTRA: more engine_load.py flags, ENGINE_TAG: a suffix for its files;
#            SERVER_EXTRA and SERVER_TAG the same for the server part);
#   chat:    bench/chat_turns.py, a chat's next turn (short prompt after decoding, options
#            changing every turn): time to first token, ours beside llama-server;
#   micro:   bench/native/topk_micro.c, the host's argmax and leading top-k alone;
#   rpc:     bench/rpc.py, a CUDA worker (another process, through the relay) against the
#            model on the GPU in the client.
#   device run, carry [".carry"]:  PARTS=decode,batched,spec bash bench/gpu_p16.sh
export LLAMA_BINDING_SERVER_TOOL=ON
source bench/gpu_env.sh
PARTS=",${PARTS:-decode,batched,spec},"
if [[ $PARTS == *,micro,* ]]; then
    echo "=== bench/native/topk_micro.c (the host's sampling steps alone)"
    gcc -O2 -fopenmp-simd -march=native -o "$W/topk_micro" bench/native/topk_micro.c -Inative \
        -Ivendor/llama.cpp/include -Ivendor/llama.cpp/ggml/include -L"$LLAMA_BINDING_LIB_DIR" -lllama -lggml-base \
        -l:libllama_binding_native.so -lpthread -lm -Wl,-rpath,"$LLAMA_BINDING_LIB_DIR" \
        && { lscpu | grep -E "Model name|Flags" | cut -c1-200; "$W/topk_micro"; } 2>&1 | tee "$OUT/topk_micro.txt"
fi
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
    [ -n "${BACKEND_OFF:-}" ] && timeout 240 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 \
        --ngl 99 --fa on --backend-sampling off --json "$OUT/decode-backend-off.json" 2>&1 | tee "$OUT/decode-backend-off.txt"
fi
if [[ $PARTS == *,gap,* ]]; then
    echo "=== bench/decode_gap.py"
    timeout 300 python3 bench/decode_gap.py "$MODEL" --prompt 512 --gen 128 --reps 5 --ngl 99 --fa on \
        --json "$OUT/decode_gap.json" 2>&1 | grep -v "^llama_\|^load\|^print_info" | tee "$OUT/decode_gap.txt"
fi
if [[ $PARTS == *,decode8b,* ]]; then
    model_8b || exit 1
    echo "=== bench/decode.py, 8B shape"
    timeout 400 python3 bench/decode.py "$MODEL8B" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
        --json "$OUT/decode-8b.json" 2>&1 | tee "$OUT/decode-8b.txt"
fi
if [[ $PARTS == *,batched,* ]]; then
    if [ -f .carry/base-llama_binding.tar ]; then
        # the same bench with the Python package of the last commit (bench/prepare_carry.sh
        # packs it; the native library is this build's): before/after in one run
        rm -rf "$W/base" && mkdir -p "$W/base/bench" "$W/base/tests"
        tar xf .carry/base-llama_binding.tar -C "$W/base"
        cp bench/batched.py "$W/base/bench/" && cp tests/_tinymodel.py "$W/base/tests/"
        echo "=== bench/batched.py temperature 0.8, the last commit's Python package"
        timeout 200 python3 "$W/base/bench/batched.py" --model "$MODEL" --ngl 99 --fa on --npl 16,64 --reps 2 \
            --temperature 0.8 --json "$OUT/batched-t0.8-base.json" 2>&1 | tee "$OUT/batched-t0.8-base.txt"
    fi
    for t in ${TEMPS:-0.8 0}; do
        echo "=== bench/batched.py temperature $t"
        timeout 200 python3 bench/batched.py --model "$MODEL" --ngl 99 --fa on --npl 16,64 --reps 2 \
            --temperature $t --json "$OUT/batched-t$t.json" 2>&1 | tee "$OUT/batched-t$t.txt"
    done
fi
if [[ $PARTS == *,spec,* ]]; then
    echo "=== bench/speculative_vs_llama.py"
    timeout ${SPEC_TIMEOUT:-300} python3 bench/speculative_vs_llama.py --model "$MODEL" --ngl 99 --fa on --threads 16 \
        --cases ${SPEC_CASES:-self,lookup,draft} --reps ${SPEC_REPS:-3} --max-tokens 256 --ignore-eos --json "$OUT/speculative_vs_llama${SPEC_TAG:-}.json" 2>&1 \
        | tee "$OUT/speculative_vs_llama${SPEC_TAG:-}.txt"
fi
if [[ $PARTS == *,server,* ]]; then
    server_deps
    echo "=== bench/server_vs_llama_server.py ${SERVER_EXTRA:-}"
    eval "extra=(${SERVER_EXTRA:-})"  # (quoted words stay one argument: --ours-args '--n-threads-batch 4')
    timeout 400 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients ${CLIENTS:-16,64} \
        --modes greedy,t0.8 --seconds 10 --drain-timeout 60 --procs 4 "${extra[@]}" \
        --json "$OUT/server_vs_llama_server${SERVER_TAG:-}.json" --log-dir "$OUT/logs${SERVER_TAG:-}" 2>&1 \
        | tee "$OUT/server_vs_llama_server${SERVER_TAG:-}.txt"
fi
if [[ $PARTS == *,engine,* ]]; then
    for t in ${TEMPS:-0 0.8}; do
        echo "=== bench/engine_load.py temperature $t"
        timeout 200 python3 bench/engine_load.py --model "$MODEL" --ngl 99 --fa on --clients ${CLIENTS:-16,64} \
            --seconds 10 --temperature $t ${ENGINE_EXTRA:-} --json "$OUT/engine_load-t$t${ENGINE_TAG:-}.json" 2>&1 \
            | tee "$OUT/engine_load-t$t${ENGINE_TAG:-}.txt"
    done
fi
if [[ $PARTS == *,chat,* ]]; then
    server_deps
    echo "=== bench/chat_turns.py"
    timeout 300 python3 bench/chat_turns.py --model "$MODEL" --ngl 99 --fa on --json "$OUT/chat_turns.json" \
        --log-dir "$OUT/chat-logs" 2>&1 | tee "$OUT/chat_turns.txt"
fi
