#!/usr/bin/env bash
# Packs what the GPU machine needs into .carry/ (git-ignored; pass `carry: [".carry"]`):
# the synced llama.cpp tree without docs/tests/models, two vocab GGUFs (SPM for the tests, Llama-3 BPE for the synthetic 1B model), stories260K, and
# the pure-Python wheels the GPU image lacks.
set -euo pipefail
cd "$(dirname "$0")/.."
python vendor/sync.py
mkdir -p .carry/whl
# of the examples only the two the tools option builds (bench/speculative_vs_llama.py)
examples=()
for d in vendor/llama.cpp/examples/*; do
    case "$(basename "$d")" in
        CMakeLists.txt|speculative-simple|lookup) ;;
        *) examples+=("--exclude=llama.cpp/examples/$(basename "$d")") ;;
    esac
done
tar czf .carry/llama.cpp.tar.gz -C vendor "${examples[@]}" \
    --exclude=llama.cpp/models --exclude=llama.cpp/docs --exclude=llama.cpp/media \
    --exclude=llama.cpp/tests --exclude=llama.cpp/benches \
    --exclude=llama.cpp/.github --exclude=llama.cpp/app \
    --exclude=llama.cpp/tools/ui/src --exclude=llama.cpp/tools/ui/static --exclude=llama.cpp/tools/ui/tests \
    --exclude=llama.cpp/tools/ui/.storybook --exclude=llama.cpp/tools/ui/package-lock.json \
    --exclude=llama.cpp/tools/server/public --exclude=llama.cpp/tools/server/tests llama.cpp
# (llama-server, LLAMA_BINDING_SERVER_TOOL=ON, needs tools/ui's CMakeLists.txt and ui.{h,cpp}.in
# and scripts/ui-assets.cmake: with the UI off they write an empty asset table; the UI's
# sources, ~8 MB, stay out)
cp vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf vendor/llama.cpp/models/ggml-vocab-llama-bpe.gguf .carry/
cp "${LLAMA_BINDING_MODELS:-../shared/models}/stories260K.gguf" .carry/
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d .carry/whl gguf diskcache
# our server (bench/gpu_p10.sh) on the GPU image, which has httpx, h11, click, prometheus-client
# and uvloop but none of these (anyio it has, of a version not known: sse-starlette needs >= 4.7);
# the versions tested here
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_17_x86_64 -d .carry/whl \
    fastapi==0.165.0 starlette==1.10.0 sse-starlette==3.7.1 uvicorn==0.55.0 pydantic==2.14.4 \
    pydantic-core==2.50.5 pydantic-settings==2.16.3 python-dotenv==1.2.4 annotated-types==0.8.0 \
    typing-inspection==0.4.5 typing-extensions==4.16.0 annotated-doc==0.0.7 opentelemetry-api==1.45.2 \
    anyio==4.16.0
# httptools (uvicorn's fast HTTP parser, in the server extra) and py-spy (PART=profile)
python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_5_x86_64 -d .carry/whl httptools==0.9.0 py-spy==0.4.3
# the last commit's Python package, for before/after runs (bench/gpu_p16.sh, PARTS=batched)
git archive HEAD llama_binding -o .carry/base-llama_binding.tar
du -sh .carry
