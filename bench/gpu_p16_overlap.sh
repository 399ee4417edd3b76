#!/usr/bin/env bash
# The first device call of P16 run 15 (the second is bench/gpu_p16_after.sh, on the machine
# this one leaves warm), each step's output to $OUT as it ends (bench/gpu_steps.sh):
#   decode:  bench/decode.py, the 1B shape's single-stream decode, prefill after a switch of
#            options, the switch's cost (targets 1 and 2);
#   server:  bench/server_vs_llama_server.py, ours at 64 clients, t0.8 and greedy, npp/ntg
#            128/128 (target 3 through the server), in variants of one build:
#              base     the last commit's Python package (bench/prepare_carry.sh packs it):
#                       each step's tokens handed on before its decode starts;
#              overlap  this tree: with 8 or more tokens to hand on, a step on a GPU hands
#                       them on between queuing its decode and waiting for it (AsyncLlama._step);
#              switch   overlap, Python's switch interval 0.1 ms instead of 0.5;
#              procs8   overlap, 8 client processes instead of 4 (is the load generator's
#                       own request turnaround what keeps slots empty?);
#            S_TG (llama-batched-bench -kvu, best of 3) is measured with the first variant;
#   batched: bench/batched.py at 16 and 64 streams, t0.8 and greedy (target 3 in process).
# The device brings back 8 files a call: no JSON, only each step's text.
#   device run, carry [".carry"]:  BUDGET_S=570 bash bench/gpu_p16_overlap.sh
source bench/gpu_p16_env.sh
S=(--clients 64 --modes t0.8,greedy --seconds 10 --drain-timeout 60 --servers ours --log-dir /tmp/res/logs)
rm -rf "$W/base" && mkdir -p "$W/base" && tar xf .carry/base-llama_binding.tar -C "$W/base"
step decode 30 python3 bench/decode.py "$MODEL" --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on
# (run from $W/base: `python -m llama_binding.server` puts its working folder first on sys.path;
# its engine split shows deliver and idle at 0, phases the base package does not count)
step server-base 80 bash -c "cd $W/base && PYTHONPATH=$W/base:$W/site python3 $PWD/bench/server_vs_llama_server.py \
    ${G[*]} ${S[*]} --procs 4 --bb-reps 3"
step server-overlap 40 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --procs 4 \
    --no-batched-bench
step server-switch 40 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --procs 4 \
    --no-batched-bench --ours-args="--switch-interval 0.0001"
step server-procs8 40 python3 bench/server_vs_llama_server.py "${G[@]}" "${S[@]}" --procs 8 \
    --no-batched-bench
step batched 60 bash -c "for t in 0.8 0; do python3 bench/batched.py ${G[*]} --npl 16,64 --reps 2 \
    --temperature \$t; done"
echo "done with $(left) s left"
