# Sourced first by the GPU scripts: shell options, where results go ($OUT, the device's
# folder that comes back), the work folder outside the repo copy ($W: build folders inside
# the copy were seen wiped between calls), then the CUDA build (bench/gpu_build.sh) and the
# synthetic 1B model (bench/gpu_model.sh, sets MODEL).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results}
W=/tmp/lb
# our server's Python packages (fastapi, uvicorn, sse-starlette, pydantic(-settings)), from the
# carried wheels where the GPU image lacks them (gpu_build.sh installs them only with a fresh build)
server_deps() {
    python3 -c "import fastapi, uvicorn, sse_starlette, pydantic_settings" 2>/dev/null \
        || python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target "$W/site" .carry/whl/*.whl
}
source bench/gpu_build.sh
source bench/gpu_model.sh
