/* The per-token step of the generation loop in C: one ctypes call per token instead of
 * four native calls and a dozen Python ones between the GPU's finishing one token and
 * starting the next (that gap is where the device waits for the host).
 *
 * llama_binding_decode_token: put one token in a llama_batch and decode it, with the
 *   cancel/Ctrl-C bookkeeping of abort_flag.c (a set cancel flag returns 2 at once).
 * llama_binding_sample_decode: sample from the last output with a sampler chain (which
 *   accepts the token), store it in *out_token, and, when `decode_next` is non-zero and
 *   the token does not end generation, decode it at once (the lookahead step). Returns
 *   llama_decode's code, or LLAMA_BINDING_NOT_DECODED when nothing was decoded.
 */
#include <limits.h>

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define LLAMA_BINDING_NOT_DECODED INT_MIN

struct llama_binding_abort {
    int cancel;
    int interrupts_seen;
};

int llama_binding_interrupts(void); /* abort_flag.c */

LLAMA_BINDING_EXPORT int32_t llama_binding_decode_token(struct llama_context * ctx, struct llama_batch * batch,
                                                        struct llama_binding_abort * abort, llama_token token,
                                                        llama_pos pos, llama_seq_id seq_id) {
    if (abort->cancel) {
        return 2; /* a GPU decode never sees the flag: honour it here */
    }
    abort->interrupts_seen = llama_binding_interrupts();
    batch->n_tokens = 1;
    batch->token[0] = token;
    batch->pos[0] = pos;
    batch->n_seq_id[0] = 1;
    batch->seq_id[0][0] = seq_id;
    batch->logits[0] = 1;
    return llama_decode(ctx, *batch);
}

LLAMA_BINDING_EXPORT int32_t llama_binding_sample_decode(struct llama_context * ctx, struct llama_sampler * chain,
                                                         const struct llama_vocab * vocab, struct llama_batch * batch,
                                                         struct llama_binding_abort * abort, llama_pos pos,
                                                         llama_seq_id seq_id, int32_t decode_next,
                                                         llama_token * out_token) {
    const llama_token token = llama_sampler_sample(chain, ctx, -1);
    *out_token = token;
    if (!decode_next || llama_vocab_is_eog(vocab, token)) {
        return LLAMA_BINDING_NOT_DECODED;
    }
    return llama_binding_decode_token(ctx, batch, abort, token, pos, seq_id);
}
