#!/usr/bin/env bash
# A second device call after bench/gpu_p16_pipeline.sh, on the machine it just used (issue it
# within the machine's idle window, 30 s: the build and the 1B model are reused; not run in
# run 17, whose session had no device time left): the other targets on the same build, so
# that every target has a figure from one run:
#   decode:  bench/decode.py, the 1B shape's single-stream decode, pp512 after a switch of
#            options and the switch's cost (targets 1 and 2);
#   server:  the pipelined server again at 64 clients, t0.8, for 20 s (target 3's spread);
#   spec:    bench/speculative_vs_llama.py, self-draft and n-gram lookup (target 4);
#   8b:      the 8B shape's single-stream decode (target 1), when 230 s are left.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_pipeline_after.sh
source bench/gpu_p16_env.sh
step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on
step server-20s 70 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8 --seconds 20 \
    --drain-timeout 60 --servers ours --procs 4 --bb-reps 3 --log-dir /tmp/res/logs-20s
step spec 130 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases self,lookup --reps 5 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
decode_8b
echo "done with $(left) s left"
