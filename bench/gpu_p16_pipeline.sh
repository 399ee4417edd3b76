#!/usr/bin/env bash
# P16 run 17, one device call: does queuing a busy steady step's decode before the
# per-request bookkeeping (BatchEngine.pipeline, on by AsyncLlama on a GPU) lift the server's
# 64 sampled streams at npp/ntg 128/128 towards 0.75x of S_TG?
#   server-base      the last commit's Python package (bench/prepare_carry.sh packs it),
#                    t0.8 and greedy, with llama-batched-bench's S_TG (best of 3);
#   server-pipeline  this tree, the same points;
#   batched          bench/batched.py at 64 streams, t0.8 (target 3 in process);
#   engine           bench/engine_load.py, t0.8: the engine's split of a step, no HTTP;
#   chat             bench/chat_turns.py (target 2: single streams, where nothing is queued).
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_pipeline.sh
source bench/gpu_p16_env.sh
S=(--clients 64 --modes t0.8,greedy --seconds 10 --drain-timeout 60 --servers ours --procs 4)
rm -rf "$W/base" && mkdir -p "$W/base" && tar xf .carry/base-llama_binding.tar -C "$W/base"
# (run from $W/base: `python -m llama_binding.server` puts its working folder first on sys.path)
step server-base 80 bash -c "cd $W/base && PYTHONPATH=$W/base:$W/site python3 $PWD/bench/server_vs_llama_server.py \
    ${G[*]} ${S[*]} --bb-reps 3 --log-dir /tmp/res/logs-base"
step server-pipeline 40 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --no-batched-bench \
    --log-dir /tmp/res/logs
step batched 40 python3 bench/batched.py "${G[@]}" --npl 64 --reps 2 --temperature 0.8
step engine 30 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 --temperature 0.8
step chat 60 python3 bench/chat_turns.py "${G[@]}" --json "$D/chat_turns.json" --log-dir /tmp/res/chat-logs
echo "done with $(left) s left"
