#!/usr/bin/env bash
# P13 on the GPU machine: the multimodal tests with the text model offloaded and the
# projector on the GPU (LLAMA_BINDING_TEST_NGL=-1): image chat, bad images, prefix reuse,
# AsyncLlama with concurrent image requests equal to one at a time, and the oracle test
# against llama-mtmd-cli of the same CUDA build with -ngl -1.
#   device run, carry [".carry"]:  bash bench/gpu_p13.sh
source bench/gpu_env.sh
export PIP_NO_INDEX=1 LLAMA_BINDING_TEST_NGL=-1
echo "=== multimodal tests on the GPU (LLAMA_BINDING_TEST_NGL=-1)"
{ echo "command: LLAMA_BINDING_TEST_NGL=-1 python3 -m pytest -q -rs tests/test_multimodal.py" \
       "tests/test_multimodal_async.py tests/test_multimodal_oracle.py"
  timeout 400 python3 -m pytest -q -rs tests/test_multimodal.py tests/test_multimodal_async.py \
      tests/test_multimodal_oracle.py 2>&1; } | tee "$OUT/pytest-multimodal-gpu.txt" | tail -15
# which backend the projector ran on (libmtmd logs it at load)
python3 - <<'PY' 2>&1 | tee "$OUT/projector-device.txt"
import glob, logging
from llama_binding import Llama
lines = []
class Keep(logging.Handler):
    def emit(self, record): lines.append(record.getMessage())
native = logging.getLogger("llama_binding.native")
native.addHandler(Keep()); native.setLevel(logging.INFO)
cache = ".pytest_cache/d/llama-binding-models/"
model = sorted(glob.glob(cache + "tiny-llama-spm-*.gguf"))[0]
mmproj = glob.glob(cache + "tiny-mmproj-*.gguf")[0]
with Llama(model, mmproj_path=mmproj, n_gpu_layers=-1, n_ctx=512) as llm:
    pass
print("\n".join(l for l in lines if "CLIP using" in l or "offloaded" in l or "using device" in l))
PY
