#!/usr/bin/env bash
# One time-boxed device call with questions run 13 left (bench/results/p16/gpu-13/README.md):
#   chat:    bench/chat_turns.py with 6 conversations (48 next turns, not 32): is ours' time
#            to first token behind llama-server's on every kind of turn, or was run 13 noise?
#   decode:  bench/decode.py with the GPU-side sampler off, beside the default: does the
#            context's backend-sampling set-up cost the single-stream decode (llama.cpp's own
#            eval time per token was 1174 us in our process against llama-bench's 1124)?
#   server:  bench/server_vs_llama_server.py, ours at 64 clients with 512 tokens out: the
#            server's rate against S_TG when the 128-token prompts weigh a quarter as much.
#   device run, carry [".carry"]:  BUDGET_S=585 bash bench/gpu_p16_extra.sh
source bench/gpu_p16_env.sh
step chat 90 python3 bench/chat_turns.py "${G[@]}" --conversations 6 --json "$D/chat_turns.json" \
    --log-dir /tmp/res/chat-logs
step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on
step decode-bs-off 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
    --backend-sampling off
step server-ntg512 110 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8,greedy \
    --ntg 512 --seconds 12 --drain-timeout 60 --procs 4 --servers ours --bb-reps 2 --log-dir /tmp/res/logs
echo "done with $(left) s left"
