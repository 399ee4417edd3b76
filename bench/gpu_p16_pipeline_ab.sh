#!/usr/bin/env bash
# For the next P16 device call (written in run 17's session, not yet run: no device time was
# left): the pipelined steps against plain ones in process, where the server's HTTP noise is absent:
# bench/engine_load.py at 64 clients, t0.8, 10 s a run, alternating on/off twice, first with
# the unified KV cache (as the server benchmark), then with a cache per slot (where
# llama.cpp's host-side mask of each decode is 1 x 324 cells a row, not 1 x ~12k).
#   device run, carry [".carry"]:  BUDGET_S=460 bash bench/gpu_p16_pipeline_ab.sh
source bench/gpu_p16_env.sh
step engine-unified 80 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 --temperature 0.8 \
    --pipeline on,off,on,off --bb-reps 2
step engine-split 70 python3 bench/engine_load.py "${G[@]}" --clients 64 --seconds 10 --temperature 0.8 \
    --pipeline on,off,on,off --bb-reps 1 --no-kv-unified
echo "done with $(left) s left"
