#!/usr/bin/env bash
# One time-boxed device call with P16's figures on the synthetic 1B shape, in order of need,
# each step's output copied to $OUT as it ends (bench/gpu_steps.sh):
#   decode:  bench/decode.py, greedy and sampled single-stream decode beside llama-bench
#            tg128, prefill after decoding and right after a call with other options, the
#            cost of switching options (targets 1 and 2);
#   batched: bench/batched.py at 16 and 64 streams, t0.8 (top-k 40, top-p 0.95) and greedy,
#            beside llama-batched-bench's S_TG (target 3, in process);
#   server:  bench/server_vs_llama_server.py at 16 and 64 clients, greedy and t0.8, ours and
#            llama-server, S_TG and batched-bench with its prompts (target 3, the server);
#   chat:    bench/chat_turns.py, a chat's next turn with options changing every turn,
#            time to first token beside llama-server (target 2);
#   spec:    bench/speculative_vs_llama.py, self-draft and n-gram lookup beside
#            llama-speculative-simple and llama-lookup (target 4);
#   engine:  bench/engine_load.py, the server's workload in process at 64 clients.
# The 8B shape takes bench/gpu_p16_probe.sh (its decode, decode_gap) or PARTS=decode8b of
# bench/gpu_p16.sh.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_close.sh
D=${OUT:?set OUT to the output folder}
source bench/gpu_steps.sh  # the deadline starts now, before the build
export LLAMA_BINDING_SERVER_TOOL=${LLAMA_BINDING_SERVER_TOOL:-ON}  # OFF: a shorter build, no server or chat step
OUT=/tmp/res
source bench/gpu_env.sh
cp "$OUT"/cuda-build-summary.txt "$OUT"/nvidia-smi.csv "$D"/ 2>/dev/null
server_deps
G=(--model "$MODEL" --ngl 99 --fa on)
step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
    --json "$D/decode.json"
step batched 60 bash -c "for t in 0.8 0; do python3 bench/batched.py ${G[*]} --npl 16,64 --reps 2 \
    --temperature \$t --json $D/batched-t\$t.json; done"
if [ "$LLAMA_BINDING_SERVER_TOOL" = ON ]; then
    step server 170 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 16,64 --modes greedy,t0.8 \
        --seconds 10 --drain-timeout 60 --procs 4 --log-dir /tmp/res/logs --json "$D/server.json"
    step chat 70 python3 bench/chat_turns.py "${G[@]}" --json "$D/chat_turns.json" --log-dir /tmp/res/chat-logs
else
    echo "=== server, chat skipped: no llama-server built"
fi
step spec 90 python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases self,lookup --reps 2 \
    --max-tokens 256 --ignore-eos --json "$D/speculative_vs_llama.json"
step engine 60 bash -c "for t in 0 0.8; do python3 bench/engine_load.py ${G[*]} --clients 64 --seconds 10 \
    --temperature \$t; done"
echo "done with $(left) s left"
