#!/usr/bin/env bash
# The second device call of a P16 run, on the machine bench/gpu_p16_close.sh just used (issue
# it within the machine's idle window: the build and the 1B model are reused, not redone):
# the steps that call's budget leaves out, in order of need, each step's output to $OUT:
#   chat:   bench/chat_turns.py, a chat's next turn with options changing every turn (target 2);
#   engine: bench/engine_load.py at 64 clients, greedy and t0.8: the server's workload in
#           process with the engine's step split (target 3 in process, where the server's
#           step goes);
#   spec:   bench/speculative_vs_llama.py, self-draft and n-gram lookup (target 4);
#   8b:     the 8B shape's single-stream decode (bench/decode.py; target 1), when 230 s are left.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_after.sh
source bench/gpu_p16_env.sh
step chat 70 python3 bench/chat_turns.py "${G[@]}" --json "$D/chat_turns.json" --log-dir /tmp/res/chat-logs
step engine 60 bash -c "for t in 0 0.8; do python3 bench/engine_load.py ${G[*]} --clients 64 --seconds 10 \
    --temperature \$t; done"
step spec 90 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases self,lookup --reps 2 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
decode_8b
echo "done with $(left) s left"
