#!/usr/bin/env bash
# One time-boxed device call after run 15 (bench/results/p16/gpu-15/README.md): the targets
# whose figures sat inside their noise, measured again with more samples, and the server's
# bound by length of answer:
#   chat:    bench/chat_turns.py with 8 conversations (64 next turns): target 2's "not slower";
#   spec:    bench/speculative_vs_llama.py, self-draft and lookup, 5 reps instead of 2
#            (each rep of 256 tokens is about 0.13 s on the GPU: 2 reps left 10% of noise);
#   server:  ours at 64 clients, t0.8, npp/ntg 128/128 for 20 s and 128/256 for 12 s, each
#            against the best of 3 llama-batched-bench runs of the same shape (target 3).
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_confirm.sh
source bench/gpu_p16_env.sh
S=(--clients 64 --modes t0.8 --drain-timeout 60 --procs 4 --servers ours --bb-reps 3 --log-dir /tmp/res/logs)
step chat 60 python3 bench/chat_turns.py "${G[@]}" --conversations 8 --json "$D/chat_turns.json" \
    --log-dir /tmp/res/chat-logs
step spec 130 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases self,lookup --reps 5 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
step server-ntg128 70 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --seconds 20
step server-ntg256 60 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --seconds 12 --ntg 256
echo "done with $(left) s left"
