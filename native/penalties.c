/* llama.cpp's penalties sampler, wrapped so that the native step can see its window.
 *
 * A chain of penalties then top-k (a repeat penalty with top-k 40: Ollama's defaults) runs
 * llama.cpp's penalties over every candidate of the row, a hash lookup per vocabulary entry
 * (0.3 ms for 128k on this project's 2-core machine), then sorts for the top-k. Only the
 * tokens of the penalties' window change; so the k largest after them are among the
 * k + w largest logits (w: the window's length) and the window's own tokens. The wrapper
 * forwards every call to llama.cpp's sampler and keeps the last penalty_last_n accepted
 * tokens (the same window as its ring buffer), which lb_penalties_window hands to
 * step.c's host_pick: it builds only those candidates, and the chain (the same penalties,
 * the same top-k) over them keeps what it keeps over the whole row. The wrapper has no
 * backend (GPU) half: a chain that leads with it samples on the host.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "penalties.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

struct lb_penalties {
    struct llama_sampler * inner; /* llama.cpp's penalties (or its empty sampler, disabled) */
    llama_token * ring;           /* the last cap accepted tokens, oldest at head once full */
    int32_t cap, n, head;
};

static const char * lb_penalties_name(const struct llama_sampler * smpl) {
    return llama_sampler_name(((const struct lb_penalties *) smpl->ctx)->inner);
}

static void lb_penalties_accept(struct llama_sampler * smpl, llama_token token) {
    struct lb_penalties * c = (struct lb_penalties *) smpl->ctx;
    llama_sampler_accept(c->inner, token);
    if (c->cap == 0) {
        return;
    }
    c->ring[c->head] = token;
    c->head = (c->head + 1) % c->cap;
    c->n += c->n < c->cap;
}

static void lb_penalties_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p) {
    llama_sampler_apply(((struct lb_penalties *) smpl->ctx)->inner, cur_p);
}

static void lb_penalties_reset(struct llama_sampler * smpl) {
    struct lb_penalties * c = (struct lb_penalties *) smpl->ctx;
    llama_sampler_reset(c->inner);
    c->n = c->head = 0;
}

static struct llama_sampler * lb_penalties_wrap(struct llama_sampler * inner, int32_t cap);

static struct llama_sampler * lb_penalties_clone(const struct llama_sampler * smpl) {
    const struct lb_penalties * c = (const struct lb_penalties *) smpl->ctx;
    struct llama_sampler * copy = lb_penalties_wrap(llama_sampler_clone(c->inner), c->cap);
    if (copy != NULL && c->cap > 0) {
        struct lb_penalties * d = (struct lb_penalties *) copy->ctx;
        memcpy(d->ring, c->ring, sizeof(llama_token) * (size_t) c->cap);
        d->n = c->n;
        d->head = c->head;
    }
    return copy;
}

static void lb_penalties_free(struct llama_sampler * smpl) {
    struct lb_penalties * c = (struct lb_penalties *) smpl->ctx;
    llama_sampler_free(c->inner);
    free(c->ring);
    free(c);
}

static struct llama_sampler_i lb_penalties_i = {
    /* .name              = */ lb_penalties_name,
    /* .accept            = */ lb_penalties_accept,
    /* .apply             = */ lb_penalties_apply,
    /* .reset             = */ lb_penalties_reset,
    /* .clone             = */ lb_penalties_clone,
    /* .free              = */ lb_penalties_free,
    /* .backend_init      = */ NULL,
    /* .backend_accept    = */ NULL,
    /* .backend_apply     = */ NULL,
    /* .backend_set_input = */ NULL,
    /* .backend_reset     = */ NULL,
    /* .copy_state        = */ NULL,
};

static struct llama_sampler * lb_penalties_wrap(struct llama_sampler * inner, int32_t cap) {
    if (inner == NULL) {
        return NULL;
    }
    struct lb_penalties * c = (struct lb_penalties *) calloc(1, sizeof(*c));
    llama_token * ring = cap > 0 ? (llama_token *) malloc(sizeof(llama_token) * (size_t) cap) : NULL;
    if (c == NULL || (cap > 0 && ring == NULL)) {
        free(c);
        free(ring);
        llama_sampler_free(inner);
        return NULL;
    }
    c->inner = inner;
    c->ring = ring;
    c->cap = cap;
    return llama_sampler_init(&lb_penalties_i, c);
}

LLAMA_BINDING_EXPORT struct llama_sampler * llama_binding_penalties_new(int32_t n_vocab, int32_t last_n, float repeat,
                                                                       float freq, float present) {
    const int32_t cap = last_n > 0 ? last_n : 0; /* (llama.cpp: max(last_n, 0); 0 keeps no window) */
    return lb_penalties_wrap(llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present), cap);
}

int32_t lb_penalties_window(const struct llama_sampler * smpl, const llama_token ** ring) {
    if (smpl == NULL || smpl->iface != &lb_penalties_i) {
        return -1;
    }
    const struct lb_penalties * c = (const struct lb_penalties *) smpl->ctx;
    *ring = c->ring;
    return c->n;
}
