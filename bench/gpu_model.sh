# Sourced by the GPU scripts after gpu_build.sh: writes the synthetic Llama-3.2-1B-shaped
# model (random weights, Llama-3 BPE vocabulary, 16 layers, n_embd 2048, GQA 32/8, n_ff
# 8192) and quantizes it to Q4_K_M with the same build's llama-quantize, once per machine.
# Sets MODEL.
mkdir -p vendor/llama.cpp/models && cp .carry/ggml-vocab-llama-bpe.gguf vendor/llama.cpp/models/
M=/tmp/models; mkdir -p $M
MODEL=$M/llama1b-q4km.gguf
if [ ! -f $MODEL ]; then
    t0=$(date +%s)
    python3 - <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "tests")
from _tinymodel import TinySpec, write_tiny_llama
spec = TinySpec(vocab="llama-bpe", n_embd=2048, n_layer=16, n_head=32, n_head_kv=8, n_ff=8192,
                n_ctx_train=8192, seed=1)
write_tiny_llama(Path("/tmp/models/llama1b-f32.gguf"), spec)
PY
    "$W/pkg/llama_binding/bin/llama-quantize" $M/llama1b-f32.gguf $MODEL Q4_K_M 16 \
        > $W/quantize.log 2>&1 || { tail -20 $W/quantize.log; exit 1; }
    rm -f $M/llama1b-f32.gguf
    echo "model written and quantized in $(( $(date +%s) - t0 )) s: $(ls -la $MODEL)"
fi
# model_8b: the Llama-3.1-8B-shaped one (bench/make_synthetic_8b.py, F16 random weights, one
# layer's set repeated), quantized to Q4_K_M the same way, once per machine. Sets MODEL8B.
model_8b() {
    MODEL8B=$M/llama8b-q4km.gguf
    if [ ! -f $MODEL8B ]; then
        local t0=$(date +%s)
        python3 bench/make_synthetic_8b.py $M/llama8b-f16.gguf --vocab vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf \
            || return 1
        "$W/pkg/llama_binding/bin/llama-quantize" $M/llama8b-f16.gguf $MODEL8B Q4_K_M 16 \
            > $W/quantize8b.log 2>&1 || { tail -20 $W/quantize8b.log; return 1; }
        rm -f $M/llama8b-f16.gguf
        echo "8B-shaped model written and quantized in $(( $(date +%s) - t0 )) s: $(ls -la $MODEL8B)"
    fi
}
