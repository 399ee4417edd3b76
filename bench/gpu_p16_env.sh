# Sourced first by the time-boxed P16 device scripts (bench/gpu_p16_*.sh): $D (the device's
# $OUT, where each step's text goes), the deadline (bench/gpu_steps.sh, from BUDGET_S: it
# starts before the build), the CUDA build with llama-server unless LLAMA_BINDING_SERVER_TOOL
# says otherwise, the synthetic 1B model ($MODEL), our server's Python packages, and G (the
# model flags every bench takes); decode_8b runs the 8B shape's decode step.
D=${OUT:?set OUT to the output folder}
source bench/gpu_steps.sh
export LLAMA_BINDING_SERVER_TOOL=${LLAMA_BINDING_SERVER_TOOL:-ON}
OUT=/tmp/res
source bench/gpu_env.sh
server_deps
G=(--model "$MODEL" --ngl 99 --fa on)
# the 8B shape's single-stream decode (target 1), when 230 s are left for its model and run
decode_8b() {
    if (( $(left) > 230 )); then
        model_8b && step decode-8b 120 python3 bench/decode.py "$MODEL8B" --prompt 512 --gen 128 --reps 2 \
            --ngl 99 --fa on --json "$D/decode-8b.json"
    fi
}
