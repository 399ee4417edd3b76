#!/usr/bin/env bash
# P9 on the GPU machine: the engine refactor must not slow anything down. One CUDA build;
# the Python layer before (commit b9da108, packed by `git archive` into .carry/before.tgz)
# and after (this tree) run alternately over it: bench/decode.py, bench/batched.py and
# bench/speculative.py (self-draft) on the synthetic 1B Q4_K_M, every layer offloaded,
# flash attention on. PART=tests runs the GPU tests of the touched paths instead.
#   device run, carry [".carry"]:  PART=tests bash bench/gpu_p9.sh ; PART=bench bash bench/gpu_p9.sh
source bench/gpu_env.sh
tar xzf .carry/models.tgz -C vendor
B=/tmp/before
if [ ! -d $B/llama_binding ]; then mkdir -p $B && tar xzf .carry/before.tgz -C $B; fi
ln -sfn "$PWD/vendor" $B/vendor
side() {  # side before|after SCRIPT ARGS...: one benchmark run on that Python layer
    local which=$1; shift
    if [ "$which" = before ]; then (cd $B && python3 "$OLDPWD/bench/with_tree.py" $B "$@"); else python3 "$@"; fi
}
if [ "${PART:-bench}" = tests ]; then
    PIP_NO_INDEX=1 LLAMA_BINDING_MODELS=$PWD/.carry timeout ${TEST_S:-300} python3 -m pytest -q \
        tests/test_llama.py tests/test_llama_hooks.py tests/test_threads.py tests/test_aio_robust.py \
        tests/test_batched_completion.py tests/test_robust_sampling.py tests/test_seams.py \
        tests/generation/test_batching.py > "$OUT/pytest-gpu-p9.txt" 2>&1
    tail -25 "$OUT/pytest-gpu-p9.txt"
    exit 0
fi
for rep in 1 2; do
    for which in before after; do
        echo "=== decode $which (round $rep)"
        side $which bench/decode.py $MODEL --prompt 512 --gen 128 --reps 3 --ngl 99 --fa on \
            2>&1 | tee "$OUT/decode-$which-$rep.txt" | grep -E "llama-bench|decode|prefill  "
    done
done
for which in before after; do
    echo "=== batched $which"
    side $which bench/batched.py --model $MODEL --ngl 99 --fa on --npl 1,16,64 --reps 3 2>&1 \
        | tee "$OUT/batched-$which.txt" | tail -5
done
for which in before after; do
    echo "=== speculative $which"
    side $which bench/speculative.py --model $MODEL --ngl 99 --fa on --cases self --reps 3 2>&1 \
        | tee "$OUT/speculative-$which.txt" | tail -4
done
