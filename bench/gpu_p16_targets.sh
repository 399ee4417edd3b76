#!/usr/bin/env bash
# P16, the first of two device calls on one machine (the second, bench/gpu_p16_pipeline_after.sh,
# follows within the machine's idle window and reuses this build and model): every target
# measured by one build, and the A/B of the pipelined step's wait, picks and next decode in
# one native call (native/pick_launch.c, BatchEngine.fuse) against the same from Python.
#   engine-ab     bench/engine_load.py, 64 clients, t0.8, pipeline on/unfused/on/unfused (no HTTP);
#   server        bench/server_vs_llama_server.py, 64 clients, t0.8 and greedy, ours beside
#                 llama-batched-bench's S_TG (best of 3): target 3 through the server;
#   server-base   the same, ours only, the last commit's Python package (.carry's
#                 base-llama_binding.tar, bench/prepare_carry.sh) on this build;
#   chat          bench/chat_turns.py, 8 conversations x 9 turns: target 2's next turn;
#   engine-split  engine-ab's A/B with a KV cache per slot.
# (in this order: when the device time left is short, the A/B and the server come first)
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_targets.sh
source bench/gpu_p16_env.sh
step engine-ab 75 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 --temperature 0.8 \
    --pipeline on,unfused,on,unfused --bb-reps 2
step server 80 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8,greedy --seconds 10 \
    --drain-timeout 60 --servers ours --procs 4 --bb-reps 3 --log-dir /tmp/res/logs
rm -rf "$W/base" && mkdir -p "$W/base" && tar xf .carry/base-llama_binding.tar -C "$W/base"
# (run from $W/base: `python -m llama_binding.server` puts its working folder first on sys.path)
step server-base 45 bash -c "cd $W/base && PYTHONPATH=$W/base:$W/site python3 $PWD/bench/server_vs_llama_server.py \
    ${G[*]} --clients 64 --modes t0.8,greedy --seconds 10 --drain-timeout 60 --servers ours --procs 4 \
    --no-batched-bench --log-dir /tmp/res/logs-base"
step chat 60 python3 bench/chat_turns.py "${G[@]}" --conversations 8 --json "$D/chat_turns.json" \
    --log-dir /tmp/res/chat-logs
step engine-split 65 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 --temperature 0.8 \
    --pipeline on,unfused --bb-reps 1 --no-kv-unified
echo "done with $(left) s left"
