"""GPU-side sampling gives the tokens of CPU sampling (greedy), plain greedy (the host's
argmax) gives the tokens of the GPU-side greedy sampler, and seeds reproduce.

    python bench/gpu_sampling_check.py MODEL.gguf
"""

from __future__ import annotations

import sys

from llama_binding import Llama


def main() -> None:
    path = sys.argv[1]
    prompts = ["Once upon a time", "The capital of France is", "def fibonacci(n):"]
    with Llama(path, n_ctx=512, flash_attn=True, backend_sampling=False) as cpu, \
            Llama(path, n_ctx=512, flash_attn=True, backend_sampling=True) as gpu:
        print(f"backend sampling attached: {gpu.engine.backend_sampling}")
        same = 0
        # a logit bias that changes nothing keeps greedy in a chain that the backend runs
        on_gpu = {"temperature": 0.0, "logit_bias": {0: 0.0}}
        for p in prompts:
            a = cpu.create_completion(p, max_tokens=48, **on_gpu)["choices"][0]["text"]  # type: ignore[arg-type]
            b = gpu.create_completion(p, max_tokens=48, **on_gpu)["choices"][0]["text"]  # type: ignore[arg-type]
            attached = gpu.engine.chain_on_backend
            c = gpu.create_completion(p, max_tokens=48, temperature=0.0)["choices"][0]["text"]
            same += a == b == c
            verdict = ("equal" if a == b else "DIFFERENT", "equal" if b == c else "DIFFERENT")
            verdict = ("equal" if a == b else "DIFFERENT", "equal" if b == c else "DIFFERENT")
            print(f"greedy {p!r}: CPU chain vs GPU chain (attached: {attached}) {verdict[0]}; "
                  f"vs host argmax {verdict[1]}")
        s1 = gpu.create_completion(prompts[0], max_tokens=32, seed=7)["choices"][0]["text"]
        s2 = gpu.create_completion(prompts[0], max_tokens=32, seed=7)["choices"][0]["text"]
        print(f"seeded sampling on the GPU reproduces: {s1 == s2}; "
              f"on the backend: {gpu.engine.chain_on_backend}")
        print(f"greedy equal {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
