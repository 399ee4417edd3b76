#!/usr/bin/env bash
# The second device call after bench/gpu_p16_targets.sh (or gpu_p16_pipeline.sh), on the
# machine it just used (issue it within the machine's idle window, 30 s: the build and the 1B
# model are reused): the other targets on the same build, so that every target has a figure
# from one run:
#   decode:   bench/decode.py, the 1B shape's single-stream decode, pp512 after a switch of
#             options and the switch's cost (targets 1 and 2);
#   batched:  bench/batched.py, 64 sampled streams in process (target 3);
#   spec:     bench/speculative_vs_llama.py, self-draft and n-gram lookup (target 4);
#   8b:       the 8B shape's single-stream decode (target 1), when 230 s are left;
#   server-split: the server at 64 clients, t0.8, with a KV cache per slot for ours and
#             llama-batched-bench alike (as llama-server's default with -np), when time is left.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_pipeline_after.sh
source bench/gpu_p16_env.sh
step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on
step batched 40 python3 bench/batched.py "${G[@]}" --npl 64 --reps 2 --temperature 0.8
step spec 130 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases self,lookup --reps 5 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
decode_8b
step server-split 70 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8 --seconds 10 \
    --drain-timeout 60 --servers ours --procs 4 --bb-reps 2 --kv-split --log-dir /tmp/res/logs-split
echo "done with $(left) s left"
