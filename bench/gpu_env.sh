# Sourced first by the GPU scripts: shell options, where results go ($OUT, the device's
# folder that comes back), the work folder outside the repo copy ($W: build folders inside
# the copy were seen wiped between calls), then the CUDA build (bench/gpu_build.sh) and the
# synthetic 1B model (bench/gpu_model.sh, sets MODEL).
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-bench/results}
W=/tmp/lb
source bench/gpu_build.sh
source bench/gpu_model.sh
