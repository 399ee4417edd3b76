#!/usr/bin/env bash
# P16's targets alone, in two device calls on one machine (issue the second within the
# machine's idle window, 30 s, to reuse the build and the 1B model), for a session whose
# device time is short: no A/B, no base package, no per-slot runs.
#   PART=1: the build, the 1B model, the server at 64 clients (t0.8, S_TG best of 3: target 3
#           through the server), the chat's next turn beside llama-server (target 2, 128
#           turns), then a few turns with ours under bench/trace_server.py (where its time goes);
#   PART=2: single-stream decode and a switch of options (targets 1 and 2), 64 sampled streams
#           in process (target 3), speculative beside llama.cpp's tools (target 4), the 8B
#           shape's decode (target 1) when 230 s are left.
#   PART=3: one call for a session with under 1,000 s of device time: the chat's next turn, the
#           server, both 1B decodes, the in-process batch, the n-gram lookup when 55 s are left
#           and the self-draft when 50 are (about 50 s each on an H100; run 21's slow host had
#           91 s left for both, and one step that needed 100 skipped both), then
#           bench/decode_floor.py when 70 s are left (it replaced the chat's trace; no 8B shape).
#   PART=4: speculative only (lookup, then self-draft), for the last few minutes of device time
#           (run it with LLAMA_BINDING_SERVER_TOOL=OFF: the build without llama-server).
#   PART=5: bench/decode_floor.py (where the 1B decode's fixed ~60 us a token goes, run 22),
#           then the 1B decode: a few minutes, with LLAMA_BINDING_SERVER_TOOL=OFF.
#   PART=6: PART=5, then the chat's next turn (llama-server built: the leading top-p of
#           native/top_p.c on the turns with top-k 0).
#   device runs, carry [".carry"]:  PART=1 BUDGET_S=560 bash bench/gpu_p16_final.sh
#                                   PART=2 BUDGET_S=420 bash bench/gpu_p16_final.sh
#                                   PART=3 BUDGET_S=585 bash bench/gpu_p16_final.sh
#                                   LLAMA_BINDING_SERVER_TOOL=OFF PART=5 BUDGET_S=400 bash bench/gpu_p16_final.sh
#                                   PART=6 BUDGET_S=560 bash bench/gpu_p16_final.sh
source bench/gpu_p16_env.sh
# one function per measurement (its step's name, the seconds it needs, the bench)
server() {
    step server 80 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8 --seconds 10 \
        --drain-timeout 60 --servers ours --procs 4 --bb-reps 3 --log-dir /tmp/res/logs
}
chat() {
    step chat 70 python3 bench/chat_turns.py "${G[@]}" --conversations 16 --json "$D/chat_turns.json" \
        --log-dir /tmp/res/chat-logs
}
chat_trace() {
    step chat-trace 40 python3 bench/chat_turns.py "${G[@]}" --conversations 4 --trace "$D/chat-timeline.txt" \
        --log-dir /tmp/res/chat-trace-logs
}
# where the 1B decode's fixed ~60 us a token goes (run 22: 0.910x): llama-bench's loop on our context
floor() { step floor 70 python3 bench/decode_floor.py "$MODEL" --ngl 99 --fa on --reps 2; }
decode() { step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on; }
batched() { step batched 40 python3 bench/batched.py "${G[@]}" --npl 64 --reps 2 --temperature 0.8; }
# spec NAME CASES REPS SECONDS
spec() {
    step "$1" "$4" python3 bench/speculative_vs_llama.py "${G[@]}" --threads 16 --cases "$2" --reps "$3" \
        --max-tokens 256 --ignore-eos --json "$D/$1.json"
}
case ${PART:-1} in
    1) server; chat; chat_trace ;;
    2) decode; batched; spec spec self,lookup 5 130; decode_8b ;;
    3) chat; server; decode; batched; spec spec-lookup lookup 3 55; spec spec-self self 3 50; floor ;;
    4) spec spec-lookup lookup 3 45; spec spec-self self 3 45 ;;
    5) floor; decode ;;
    6) floor; decode; chat ;;
esac
echo "done with $(left) s left"
