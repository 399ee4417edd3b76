#!/usr/bin/env bash
# P10 on the GPU machine: our OpenAI-compatible server (python -m llama_binding.server) beside
# llama-server of the same CUDA build, under the same streaming load (bench/server_load.py:
# 128-token prompts, 128 tokens out, ignore_eos, /v1/completions), at 1, 16 and 64 clients,
# greedy and temperature 0.8, with llama-batched-bench's S_TG beside them
# (bench/server_vs_llama_server.py), on the synthetic 1B Q4_K_M, every layer offloaded,
# flash attention on. First the load generator's own ceiling (--self-test) on that machine.
#   here, once:  bash bench/prepare_carry.sh   (llama.cpp with tools/ui's CMake files, the server's wheels)
#   device run, carry [".carry"]:
#     PART=build bash bench/gpu_p10.sh   # CUDA build with llama-server (~5 min), the model, the self-test
#     PART=bench bash bench/gpu_p10.sh   # the comparison (~4 min with SECONDS_PER_POINT=10)
#   PART=all (the default) does both in one call (SELFTEST=0 skips the client's ceiling: build,
#   model and comparison then fit one call; EXTRA=--kv-split: a KV cache per slot for all three).
#   PART=kv: greedy at 16/64 clients, ours and batched-bench, with the unified KV cache, with
#   a context of just the workload's size, and with a KV cache per slot (~2 min).
#   PART=profile: our server alone at 64 clients, greedy then t0.8, each under py-spy (its
#   wheel in .carry/whl) for 8 s: the threads' collapsed stacks, for where the time goes.
export LLAMA_BINDING_SERVER_TOOL=ON  # (the default with LLAMA_BINDING_TOOLS=ON; CMakeLists.txt reads it)
source bench/gpu_env.sh
PART=${PART:-all}
SECONDS_PER_POINT=${SECONDS_PER_POINT:-10}

server_deps
# a build of an earlier call without llama-server (LLAMA_BINDING_SERVER_TOOL was off): add it
if [ ! -x "$W/pkg/llama_binding/bin/llama-server" ]; then
    # (a tree from an older tarball lacks tools/ui's CMake files: unpack the carried one over it)
    [ -f vendor/llama.cpp/tools/ui/CMakeLists.txt ] || { mkdir -p vendor && tar xzf .carry/llama.cpp.tar.gz -C vendor; }
    t0=$(date +%s)
    { cmake -DLLAMA_BINDING_SERVER_TOOL=ON "$W/build" && cmake --build "$W/build" --target llama-server -j16 \
        && cmake --install "$W/build" --component llama_binding --prefix "$W/pkg"; } > "$W/server-build.log" 2>&1 \
        || { tail -60 "$W/server-build.log"; exit 1; }
    echo "llama-server added to the earlier build in $(( $(date +%s) - t0 )) s" | tee -a "$OUT/cuda-build-summary.txt"
fi
ls -la "$W/pkg/llama_binding/bin/llama-server" || exit 1

if { [ "$PART" = build ] || [ "$PART" = all ]; } && [ "${SELFTEST:-1}" = 1 ]; then
    grep -E "llama-server|UI:" "$W/cuda-build.log" | head -5 > "$OUT/server-build-lines.txt" || true
    "$W/pkg/llama_binding/bin/llama-server" --version > "$OUT/llama-server-version.txt" 2>&1
    python3 -c "import llama_binding.server" || { echo "llama_binding.server does not import"; exit 1; }
    # the client's ceiling: 64 clients, chunks as fast as possible (0) or each in its own read (1 ms
    # apart), the clients in 1 or PROCS processes; the comparison below must stay well under it
    for p in 1 ${PROCS:-4}; do
        for iv in 0 1; do
            echo "=== self-test: 64 clients in $p process(es), ${iv} ms between chunks"
            python3 bench/server_load.py --self-test --clients 64 --procs $p --seconds 5 --max-tokens 128 \
                --fake-interval-ms $iv --json "$OUT/selftest-p$p-i$iv.json" 2>&1 | tee "$OUT/selftest-p$p-i$iv.txt"
        done
    done
fi
if [ "$PART" = bench ] || [ "$PART" = all ]; then
    # EXTRA: more options for the comparison (e.g. EXTRA=--kv-split: a KV cache per slot for all three)
    tag=${EXTRA// /}
    echo "=== server_vs_llama_server: $MODEL, $SECONDS_PER_POINT s per point ${EXTRA:-}"
    timeout 540 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients 1,16,64 \
        --modes greedy,t0.8 --seconds "$SECONDS_PER_POINT" --drain-timeout 60 --procs ${PROCS:-4} ${EXTRA:-} \
        --json "$OUT/server_vs_llama_server$tag.json" --log-dir "$OUT/logs$tag" 2>&1 | tee "$OUT/server_vs_llama_server$tag.txt"
    nvidia-smi --query-gpu=memory.used,memory.total --format=csv >> "$OUT/server_vs_llama_server.txt" 2>&1
fi
if [ "$PART" = kv ]; then
    # greedy at 16 and 64 clients, ours and batched-bench: the unified KV cache (as above), the
    # same with a context just the workload's size, and a KV cache per slot
    for variant in "" "--ctx 16640" "--kv-split"; do
        echo "=== ours, KV variant: ${variant:-unified}"
        timeout 200 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients 16,64 \
            --modes greedy --seconds 8 --procs ${PROCS:-4} --servers ours $variant \
            --json "$OUT/kv${variant// /}.json" --log-dir "$OUT/logs-kv${variant// /}" 2>&1 \
            | tee "$OUT/kv${variant// /}.txt" | grep -E "S_TG|^ +(16|64) greedy|TTFT|inter-token"
    done
fi
if [ "$PART" = profile ]; then
    port=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])")
    python3 -m llama_binding.server --model "$MODEL" --n-seq-max 64 --n-ctx 20736 --flash-attn on \
        --n-gpu-layers 99 --n-batch 2048 --n-ubatch 512 --host 127.0.0.1 --port "$port" > "$OUT/profile-server.log" 2>&1 &
    spid=$!
    for _ in $(seq 120); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 1; done
    for mode in "0.0" "0.8"; do
        python3 bench/server_load.py --url "http://127.0.0.1:$port" --clients 64 --seconds 14 --procs 4 \
            --prompt-tokens 128 --max-tokens 128 --ignore-eos --temperature $mode --top-k 40 --top-p 0.95 \
            --min-p 0.05 --pid $spid > "$OUT/profile-load-t$mode.txt" 2>&1 &
        lpid=$!
        sleep 4
        "$W/site/bin/py-spy" record --pid $spid --duration 8 --rate 250 --threads --format raw \
            -o "$OUT/profile-t$mode.txt" > "$OUT/py-spy-t$mode.log" 2>&1 || tail -5 "$OUT/py-spy-t$mode.log"
        wait $lpid
        tail -8 "$OUT/profile-load-t$mode.txt"
    done
    kill -TERM $spid; wait $spid; echo "server exit status $?"
fi
