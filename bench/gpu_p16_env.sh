# Sourced first by the time-boxed P16 device scripts (bench/gpu_p16_*.sh): $D (the device's
# $OUT, where each step's text goes), the deadline (bench/gpu_steps.sh, from BUDGET_S: it
# starts before the build), the CUDA build with llama-server unless LLAMA_BINDING_SERVER_TOOL
# says otherwise, the synthetic 1B model ($MODEL), our server's Python packages, and G (the
# model flags every bench takes).
D=${OUT:?set OUT to the output folder}
source bench/gpu_steps.sh
export LLAMA_BINDING_SERVER_TOOL=${LLAMA_BINDING_SERVER_TOOL:-ON}
OUT=/tmp/res
source bench/gpu_env.sh
server_deps
G=(--model "$MODEL" --ngl 99 --fa on)
