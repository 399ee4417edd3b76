#!/usr/bin/env bash
# Packs what the GPU machine needs into .carry/ (git-ignored; pass `carry: [".carry"]`):
# the synced llama.cpp tree without docs/tests/models, two vocab GGUFs (SPM for the tests, Llama-3 BPE for the synthetic 1B model), stories260K, and
# the pure-Python wheels the GPU image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
python vendor/sync.py
mkdir -p .carry/whl
tar czf .carry/llama.cpp.tar.gz -C vendor \
    --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/media \
    --exclude=llama.cpp/tests --exclude=llama.cpp/examples --exclude=llama.cpp/benches \
    --exclude=llama.cpp/.github --exclude=llama.cpp/app --exclude=llama.cpp/tools/ui \
    --exclude=llama.cpp/tools/server/public llama.cpp
cp vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf .carry/
cp "${LLAMA_BINDING_MODELS:-../shared/models}/stories260K.gguf" .carry/
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d .carry/whl gguf diskcache
du -sh .carry
