#!/usr/bin/env bash
# The shortest P16 device call: the build, the 1B model, then the in-process A/B of the
# pipelined step's wait, picks and next decode in one native call (BatchEngine.fuse: "on")
# against the same from Python ("unfused"), 64 clients, t0.8, bench/engine_load.py; then,
# if time is left, the server at 64 clients (target 3). For a session with little device
# time left (gpu_p16_targets.sh holds the full set).
#   device run, carry [".carry"]:  BUDGET_S=350 bash bench/gpu_p16_fuse_ab.sh
source bench/gpu_p16_env.sh
step engine-ab 50 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 8 --temperature 0.8 \
    --pipeline on,unfused,on,unfused --bb-reps 1
step server 45 python3 bench/server_vs_llama_server.py "${G[@]}" --clients 64 --modes t0.8 --seconds 8 \
    --drain-timeout 30 --servers ours --procs 4 --bb-reps 1 --log-dir /tmp/res/logs
echo "done with $(left) s left"
