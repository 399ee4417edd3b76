"""Load a model with every layer offloaded and compare greedy text with a CPU run.

Usage: python bench/gpu_check.py MODEL.gguf OUT.json

Writes system_info() and the result to OUT.json. Uses only the generated C API, so it
checks the build and the loader, not the high-level classes.
"""

from __future__ import annotations

import ctypes
import json
import sys
import time

import llama_binding
from llama_binding import capi


def greedy(model_path: str, n_gpu_layers: int, prompt: str, n_predict: int) -> dict[str, object]:
    mparams = capi.llama_model_default_params()
    mparams.n_gpu_layers = n_gpu_layers
    t0 = time.perf_counter()
    model = capi.llama_model_load_from_file(model_path.encode(), mparams)
    if not model:
        raise SystemExit(f"could not load {model_path}")
    load_s = time.perf_counter() - t0
    vocab = capi.llama_model_get_vocab(model)
    text = prompt.encode()
    tokens = (capi.llama_token * (len(text) + 8))()
    n = capi.llama_tokenize(vocab, text, len(text), tokens, len(tokens), True, True)
    cparams = capi.llama_context_default_params()
    cparams.n_ctx = 256
    ctx = capi.llama_init_from_model(model, cparams)
    chain = capi.llama_sampler_chain_init(capi.llama_sampler_chain_default_params())
    capi.llama_sampler_chain_add(chain, capi.llama_sampler_init_greedy())
    batch = capi.llama_batch_get_one(tokens, n)
    out = []
    buf = ctypes.create_string_buffer(64)
    t0 = time.perf_counter()
    for _ in range(n_predict):
        if capi.llama_decode(ctx, batch) != 0:
            raise SystemExit("llama_decode failed")
        tok = capi.llama_sampler_sample(chain, ctx, -1)
        if capi.llama_vocab_is_eog(vocab, tok):
            break
        k = capi.llama_token_to_piece(vocab, tok, buf, len(buf), 0, True)
        out.append(buf.raw[:k])
        one = (capi.llama_token * 1)(tok)
        batch = capi.llama_batch_get_one(one, 1)
    gen_s = time.perf_counter() - t0
    capi.llama_sampler_free(chain)
    capi.llama_free(ctx)
    capi.llama_model_free(model)
    return {"n_gpu_layers": n_gpu_layers, "load_s": round(load_s, 4), "gen_s": round(gen_s, 4),
            "tokens": len(out), "text": b"".join(out).decode("utf-8", "replace")}


def main() -> None:
    model_path, out_path = sys.argv[1], sys.argv[2]
    info = llama_binding.system_info()
    prompt = "Once upon a time"
    gpu = greedy(model_path, -1, prompt, 48)
    cpu = greedy(model_path, 0, prompt, 48)
    result = {"system_info": info.as_dict(), "model": model_path, "prompt": prompt,
              "gpu": gpu, "cpu": cpu, "same_text": gpu["text"] == cpu["text"]}
    with open(out_path, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps({k: v for k, v in result.items() if k != "system_info"}, indent=2))
    print(json.dumps([d for d in result["system_info"]["devices"]], indent=2))


if __name__ == "__main__":
    main()
