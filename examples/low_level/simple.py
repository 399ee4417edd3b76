"""llama.cpp's ``simple`` example, in Python, on the raw C API (``llama_binding.capi``).

Greedy generation with a single sequence: load the model, tokenize the prompt, decode it with
``llama_batch_get_one``, then sample one token at a time with a native sampler chain.

    python examples/low_level/simple.py MODEL_PATH [PROMPT] [-n N_PREDICT] [-ngl N_GPU_LAYERS]

This is the C API as is: bytes in and out, explicit frees. The ``Llama`` class wraps all this.
"""

from __future__ import annotations

import argparse
import ctypes
import sys

from llama_binding import capi
from llama_binding.capi import _loader


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("model", help="path to a GGUF model")
    ap.add_argument("prompt", nargs="*", default=["Hello my name is"], help="the prompt")
    ap.add_argument("-n", dest="n_predict", type=int, default=32, help="number of tokens to predict")
    ap.add_argument("-ngl", dest="n_gpu_layers", type=int, default=99, help="layers to offload to the GPU")
    args = ap.parse_args(argv)
    prompt = " ".join(args.prompt).encode()
    out = sys.stdout.buffer

    # load the dynamic backends (CPU, CUDA, ...) when the build has them as separate libraries
    if capi.ggml_backend_reg_count() == 0:
        capi.ggml_backend_load_all_from_path(str(_loader.lib_dir()).encode())
    capi.llama_backend_init()

    # initialize the model
    model_params = capi.llama_model_default_params()
    model_params.n_gpu_layers = args.n_gpu_layers
    model = capi.llama_model_load_from_file(args.model.encode(), model_params)
    if not model:  # a NULL pointer is false
        print("error: unable to load model", file=sys.stderr)
        return 1
    vocab = capi.llama_model_get_vocab(model)

    # tokenize the prompt: a first call with no buffer returns minus the number of tokens
    n_prompt = -capi.llama_tokenize(vocab, prompt, len(prompt), None, 0, True, True)
    prompt_tokens = (capi.llama_token * n_prompt)()
    if capi.llama_tokenize(vocab, prompt, len(prompt), prompt_tokens, n_prompt, True, True) < 0:
        print("error: failed to tokenize the prompt", file=sys.stderr)
        return 1

    # initialize the context
    ctx_params = capi.llama_context_default_params()
    ctx_params.n_ctx = n_prompt + args.n_predict - 1  # the context size
    ctx_params.n_batch = n_prompt  # the most tokens one llama_decode call may get
    ctx_params.no_perf = False  # enable performance counters
    ctx = capi.llama_init_from_model(model, ctx_params)
    if not ctx:
        print("error: failed to create the llama_context", file=sys.stderr)
        return 1

    # initialize the sampler
    sparams = capi.llama_sampler_chain_default_params()
    sparams.no_perf = False
    smpl = capi.llama_sampler_chain_init(sparams)
    capi.llama_sampler_chain_add(smpl, capi.llama_sampler_init_greedy())

    buf = ctypes.create_string_buffer(128)

    def piece(token: int) -> bytes:
        n = capi.llama_token_to_piece(vocab, token, buf, len(buf), 0, True)
        if n < 0:
            raise SystemExit(f"error: failed to convert token {token} to a piece")
        return buf.raw[:n]

    # print the prompt token by token
    for token in prompt_tokens:
        out.write(piece(token))

    # prepare a batch for the prompt
    batch = capi.llama_batch_get_one(prompt_tokens, n_prompt)
    decoder_start = capi.llama_token()
    if capi.llama_model_has_encoder(model):
        if capi.llama_encode(ctx, batch):
            print("error: failed to encode", file=sys.stderr)
            return 1
        decoder_start.value = capi.llama_model_decoder_start_token(model)
        if decoder_start.value == capi.LLAMA_TOKEN_NULL:
            decoder_start.value = capi.llama_vocab_bos(vocab)
        batch = capi.llama_batch_get_one(decoder_start, 1)

    # main loop
    t_main_start = capi.ggml_time_us()
    n_decode = 0
    new_token = capi.llama_token()  # the one-token batch points here, so it must outlive the batch
    n_pos = 0
    while n_pos + batch.n_tokens < n_prompt + args.n_predict:
        # evaluate the current batch with the transformer model
        ret = capi.llama_decode(ctx, batch)
        if ret != 0:
            print(f"error: failed to eval, return code {ret}", file=sys.stderr)
            return 1
        n_pos += batch.n_tokens

        # sample the next token
        new_token.value = capi.llama_sampler_sample(smpl, ctx, -1)
        # is it an end of generation?
        if capi.llama_vocab_is_eog(vocab, new_token.value):
            break
        out.write(piece(new_token.value))
        out.flush()

        # prepare the next batch with the sampled token
        batch = capi.llama_batch_get_one(new_token, 1)
        n_decode += 1

    out.write(b"\n")
    out.flush()
    t_main_end = capi.ggml_time_us()
    seconds = (t_main_end - t_main_start) / 1e6
    print(f"decoded {n_decode} tokens in {seconds:.2f} s, speed: {n_decode / max(seconds, 1e-9):.2f} t/s",
          file=sys.stderr)
    capi.llama_perf_sampler_print(smpl)
    capi.llama_perf_context_print(ctx)

    capi.llama_sampler_free(smpl)
    capi.llama_free(ctx)
    capi.llama_model_free(model)
    capi.llama_backend_free()
    return 0


if __name__ == "__main__":
    sys.exit(main())
