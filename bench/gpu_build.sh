# Sourced by the GPU scripts: the CUDA build of the package into $W/pkg (skipped when a
# build from this same call is already there). Needs W and OUT set.
mkdir -p "$W" "$OUT"
if [ ! -f "$W/pkg/llama_binding/lib/libllama.so" ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target "$W/site" .carry/whl/*.whl
    export PYTHONPATH="$W/site"
    mkdir -p vendor && tar xzf .carry/llama.cpp.tar.gz -C vendor
    mkdir -p vendor/llama.cpp/models && cp .carry/ggml-vocab-llama-spm.gguf vendor/llama.cpp/models/
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/nvidia-smi.csv"
    nvcc --version | tail -2 >> "$OUT/nvidia-smi.csv"

    start=$(date +%s)
    CMAKE_ARGS="-DGGML_CUDA=on -DCMAKE_CUDA_ARCHITECTURES=90" LLAMA_BINDING_TOOLS=ON \
    CMAKE_BUILD_PARALLEL_LEVEL=16 \
    python3 -m pip install --no-build-isolation --no-deps -v --target "$W/pkg" \
        -Cbuild-dir="$W/build" . > "$W/cuda-build.log" 2>&1 || { tail -80 "$W/cuda-build.log"; exit 1; }
    end=$(date +%s)
    grep -E "Including|shipping|CUDA Toolkit|CMAKE_CUDA_ARCH" "$W/cuda-build.log" | head -20 > "$OUT/cuda-build-summary.txt" || true
    echo "cuda_build_wall_s=$((end - start)) (pip install of the package with LLAMA_BINDING_TOOLS=ON, 16 jobs)" \
        | tee -a "$OUT/cuda-build-summary.txt"
    ls -la "$W/pkg/llama_binding/lib" "$W/pkg/llama_binding/bin" | tee -a "$OUT/cuda-build-summary.txt"

    cat native/* | sha1sum > "$W/native.sha"
elif ! cat native/* | sha1sum | cmp -s - "$W/native.sha"; then
    [ -f vendor/llama.cpp/include/llama.h ] || { mkdir -p vendor && tar xzf .carry/llama.cpp.tar.gz -C vendor; }
    # native/*.c changed since the build of an earlier call: rebuild only our helper library
    cmake --build "$W/build" --target llama_binding_native > "$W/native-build.log" 2>&1 \
        || { tail -40 "$W/native-build.log"; exit 1; }
    cp "$W/build/libllama_binding_native.so" "$W/pkg/llama_binding/lib/"
    cat native/* | sha1sum > "$W/native.sha"
fi
# the native libraries and tools from the build, the Python code from this working tree (so a
# Python-only change needs no rebuild between calls)
export LLAMA_BINDING_LIB_DIR="$W/pkg/llama_binding/lib"
export PYTHONPATH="$PWD:$W/site"
