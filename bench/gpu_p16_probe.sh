#!/usr/bin/env bash
# One time-boxed device call for P16's two open targets, each step's output copied to $OUT as
# soon as it ends (a call stopped at its limit still brings back what ran):
#   1. the server at 64 clients, greedy and t0.8, with the engine's step split read from its
#      /metrics (bench/server_vs_llama_server.py --servers ours, llama-batched-bench's S_TG
#      in the same run);
#   2. the same workload in process (bench/engine_load.py), its step split beside the server's;
#   3. the 8B shape: bench/decode_gap.py (lookahead greedy and sampled completions) and
#      bench/decode.py, single-stream decode beside llama-bench tg128;
#   4. the server at 64 clients with 4 batch threads (--n-threads-batch 4): does the CPU's
#      oversubscription (16 batch/sampling threads beside 4 client processes) cost the
#      sampled steps?
#   device run, carry [".carry"]:  BUDGET_S=560 bash bench/gpu_p16_probe.sh
D=${OUT:?set OUT to the output folder}
source bench/gpu_steps.sh  # the deadline starts now, before the build
export LLAMA_BINDING_SERVER_TOOL=ON
OUT=/tmp/res
source bench/gpu_env.sh
cp "$OUT"/cuda-build-summary.txt "$OUT"/nvidia-smi.csv "$D"/ 2>/dev/null
server_deps
step server-64 110 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients 64 \
    --modes greedy,t0.8 --seconds 10 --drain-timeout 60 --procs 4 --servers ours --log-dir /tmp/res/logs \
    --json "$D/server-64.json"
step engine-64 60 bash -c "for t in 0 0.8; do python3 bench/engine_load.py --model $MODEL --ngl 99 --fa on \
    --clients 64 --seconds 10 --temperature \$t; done"
if (( $(left) > 200 )); then
    model_8b && {
        step decode_gap-8b 90 python3 bench/decode_gap.py "$MODEL8B" --reps 4 --only lookahead,sampled
        step decode-8b 120 python3 bench/decode.py "$MODEL8B" --prompt 512 --gen 128 --reps 2 --ngl 99 --fa on
    }
fi
step server-64-nt4 80 python3 bench/server_vs_llama_server.py --model "$MODEL" --ngl 99 --fa on --clients 64 \
    --modes greedy,t0.8 --seconds 10 --drain-timeout 60 --procs 4 --servers ours --no-batched-bench \
    --ours-args "--n-threads-batch 4" --log-dir /tmp/res/logs-nt4
echo "done with $(left) s left"
