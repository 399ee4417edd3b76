"""A sampler written in Python, plugged into a native sampler chain through ``llama_sampler_i``.

The Python sampler bans some tokens (their logits become -inf); the native greedy sampler
after it in the chain then picks the best remaining token. By default it bans ``","``, so
the stories260K model, which continues "Once upon a time" with ", there was...", has to
find another way to go on.

    python examples/low_level/custom_sampler.py MODEL_PATH [PROMPT] [-n N] [--ban TEXT ...]

How it is wired: ``llama_sampler_i`` is a struct of C function pointers. Each Python callback
is wrapped in the generated callback type of its member (``llama_sampler_i_apply_fn``...),
members left unset are NULL (allowed for ``name``, ``accept``, ``reset``, and for ``clone``
and ``free`` when the sampler context is NULL). ``llama_sampler_init(iface, ctx)`` returns a
native ``llama_sampler`` that the chain owns; the interface struct and the callback objects
must stay alive until the chain is freed.
"""

from __future__ import annotations

import argparse
import ctypes
import math
import sys

from llama_binding import capi


class BanSampler:
    """Sets the logit of every banned token to -inf; counts its calls."""

    name = ctypes.create_string_buffer(b"python-ban")

    def __init__(self, banned: set[int]) -> None:
        self.banned = banned
        self.calls = 0
        # the callbacks must outlive the native sampler: keep them on the instance
        self.iface = capi.llama_sampler_i(
            name=capi.llama_sampler_i_name_fn(self._name),
            apply=capi.llama_sampler_i_apply_fn(self._apply),
        )
        self.sampler = capi.llama_sampler_init(self.iface, None)

    def _name(self, smpl: object) -> int:
        # a callback returning a pointer returns its address (ctypes cannot return char *)
        return ctypes.addressof(self.name)

    def _apply(self, smpl: object, cur_p: ctypes._Pointer[capi.llama_token_data_array]) -> None:
        self.calls += 1
        candidates = cur_p.contents
        data = candidates.data
        for i in range(candidates.size):
            if data[i].id in self.banned:
                data[i].logit = -math.inf
        candidates.sorted = False


def tokenize(vocab: ctypes._Pointer[capi.llama_vocab], text: bytes, add_special: bool) -> list[int]:
    n = -capi.llama_tokenize(vocab, text, len(text), None, 0, add_special, True)
    tokens = (capi.llama_token * n)()
    if capi.llama_tokenize(vocab, text, len(text), tokens, n, add_special, True) < 0:
        raise SystemExit(f"error: could not tokenize {text!r}")
    return list(tokens)


def piece(vocab: ctypes._Pointer[capi.llama_vocab], token: int) -> bytes:
    buf = ctypes.create_string_buffer(64)
    n = capi.llama_token_to_piece(vocab, token, buf, len(buf), 0, False)
    return buf.raw[: max(n, 0)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("model", help="path to a GGUF model")
    ap.add_argument("prompt", nargs="*", default=["Once upon a time"], help="the prompt")
    ap.add_argument("-n", dest="n_predict", type=int, default=24, help="number of tokens to predict")
    ap.add_argument("--ban", action="append", default=None, help='text of a token to ban (default: ",")')
    args = ap.parse_args(argv)
    prompt = " ".join(args.prompt).encode()
    out = sys.stdout.buffer

    capi.llama_backend_init()
    model_params = capi.llama_model_default_params()
    model_params.n_gpu_layers = 0
    model = capi.llama_model_load_from_file(args.model.encode(), model_params)
    if not model:
        print("error: unable to load model", file=sys.stderr)
        return 1
    vocab = capi.llama_model_get_vocab(model)

    # the tokens whose piece is exactly the banned text (tokenizing "," could add a space token)
    ban_texts = {text.encode() for text in args.ban or [","]}
    banned = {t for t in range(capi.llama_vocab_n_tokens(vocab)) if piece(vocab, t) in ban_texts}
    if not banned:
        print(f"error: no token is exactly one of {sorted(ban_texts)}", file=sys.stderr)
        return 1
    prompt_tokens = tokenize(vocab, prompt, add_special=True)

    ctx_params = capi.llama_context_default_params()
    ctx_params.n_ctx = len(prompt_tokens) + args.n_predict
    ctx_params.n_batch = len(prompt_tokens)
    ctx = capi.llama_init_from_model(model, ctx_params)
    if not ctx:
        print("error: failed to create the llama_context", file=sys.stderr)
        return 1

    # the chain: the Python sampler first, then native greedy picks the top remaining token
    ban = BanSampler(banned)
    chain = capi.llama_sampler_chain_init(capi.llama_sampler_chain_default_params())
    capi.llama_sampler_chain_add(chain, ban.sampler)  # the chain owns the native sampler now
    capi.llama_sampler_chain_add(chain, capi.llama_sampler_init_greedy())
    name = capi.llama_sampler_name(ban.sampler) or b""

    tokens = (capi.llama_token * len(prompt_tokens))(*prompt_tokens)
    batch = capi.llama_batch_get_one(tokens, len(tokens))
    new_token = capi.llama_token()
    generated: list[int] = []
    out.write(prompt)
    for _ in range(args.n_predict):
        ret = capi.llama_decode(ctx, batch)
        if ret != 0:
            print(f"error: llama_decode returned {ret}", file=sys.stderr)
            return 1
        new_token.value = capi.llama_sampler_sample(chain, ctx, -1)
        if capi.llama_vocab_is_eog(vocab, new_token.value):
            break
        generated.append(new_token.value)
        out.write(piece(vocab, new_token.value))
        out.flush()
        batch = capi.llama_batch_get_one(new_token, 1)
    out.write(b"\n")

    sampled_banned = sorted(banned.intersection(generated))
    out.write(f"sampler {name.decode()!r} apply() called {ban.calls} times for {len(generated)} tokens; "
              f"banned token ids {sorted(banned)} sampled: {sampled_banned or 'never'}\n".encode())
    out.flush()

    capi.llama_sampler_free(chain)  # frees the Python sampler's native half too
    capi.llama_free(ctx)
    capi.llama_model_free(model)
    capi.llama_backend_free()
    if ban.calls < len(generated) or sampled_banned:
        print("error: the Python sampler was not applied to every step", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
