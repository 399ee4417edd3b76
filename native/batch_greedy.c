/* Greedy sampling of many sequences on the backend with one argmax, for the batching engine.
 *
 * llama.cpp's greedy sampler, attached to a sequence with llama_set_sampler, adds one argmax
 * node per output row and still copies that row's 128k logits to the host: at 64 sequences
 * 64 kernels and 128 copies per decode, slower than copying all the logits and taking the
 * argmax on the host. The samplers of one group share one argmax over every output row (the
 * first sampler applied in a graph builds it, the others take their row of it) and leave no
 * logits to copy, so a decode brings back one token per sequence: with every sequence in the
 * batch sampled so, llama.cpp skips the copy of the raw logits altogether.
 *
 * A group lives while its owner holds it (llama_binding_greedy_group_new/_release) or any of
 * its samplers does. llama.cpp calls backend_reset on every attached sampler before it builds
 * a sampling graph, which clears the group's argmax, so a node of an old graph is never used.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

struct greedy_group {
    int refs;
    const struct ggml_tensor * src; /* the logits matrix of the graph being built */
    struct ggml_tensor * argmax;    /* its argmax over every row */
};

struct greedy_sampler {
    struct greedy_group * group;
};

static void group_unref(struct greedy_group * g) {
    if (--g->refs == 0) {
        free(g);
    }
}

LLAMA_BINDING_EXPORT struct greedy_group * llama_binding_greedy_group_new(void) {
    struct greedy_group * g = (struct greedy_group *) calloc(1, sizeof(*g));
    if (g != NULL) {
        g->refs = 1;
    }
    return g;
}

LLAMA_BINDING_EXPORT void llama_binding_greedy_group_release(struct greedy_group * g) {
    if (g != NULL) {
        group_unref(g);
    }
}

static const char * greedy_name(const struct llama_sampler * smpl) {
    (void) smpl;
    return "batched-greedy";
}

/* on the CPU (a chain that could not be offloaded): the first largest logit */
static void greedy_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p) {
    (void) smpl;
    if (cur_p->size == 0) {
        return;
    }
    size_t best = 0;
    for (size_t i = 1; i < cur_p->size; i++) {
        if (cur_p->data[i].logit > cur_p->data[best].logit) {
            best = i;
        }
    }
    cur_p->selected = (int64_t) best;
}

static struct llama_sampler * greedy_new(struct greedy_group * g);

static struct llama_sampler * greedy_clone(const struct llama_sampler * smpl) {
    return greedy_new(((const struct greedy_sampler *) smpl->ctx)->group);
}

static void greedy_free(struct llama_sampler * smpl) {
    struct greedy_sampler * s = (struct greedy_sampler *) smpl->ctx;
    group_unref(s->group);
    free(s);
}

static bool greedy_backend_init(struct llama_sampler * smpl, ggml_backend_buffer_type_t buft,
                                uint32_t n_outputs_max_per_seq) {
    (void) smpl;
    (void) n_outputs_max_per_seq;
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    if (dev == NULL) {
        return true; /* the CPU backend runs every op */
    }
    struct ggml_init_params params = {ggml_tensor_overhead() * 4, NULL, true};
    struct ggml_context * ctx = ggml_init(params);
    if (ctx == NULL) {
        return false;
    }
    struct ggml_tensor * probe = ggml_argmax(ctx, ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 128 * 1024, 2));
    const bool ok = ggml_backend_dev_supports_op(dev, probe);
    ggml_free(ctx);
    return ok;
}

static void greedy_backend_apply(struct llama_sampler * smpl, struct ggml_context * ctx, struct ggml_cgraph * gf,
                                 struct llama_sampler_data * data) {
    (void) gf;
    struct greedy_group * g = ((struct greedy_sampler *) smpl->ctx)->group;
    const struct ggml_tensor * logits = data->logits;
    const struct ggml_tensor * src = logits->view_src;
    /* llama.cpp hands each sequence a row of the output logits matrix, as a 1-D view */
    const bool is_row = src != NULL && ggml_is_contiguous(src) && src->type == GGML_TYPE_F32 &&
                        ggml_is_matrix(src) && src->ne[0] == logits->ne[0] && ggml_n_dims(logits) == 1 &&
                        logits->view_offs % src->nb[1] == 0;
    if (!is_row) { /* anything else: its own argmax */
        data->sampled = ggml_argmax(ctx, ggml_reshape_2d(ctx, data->logits, ggml_nelements(data->logits), 1));
        data->logits = NULL;
        return;
    }
    if (g->argmax == NULL || g->src != src) {
        g->src = src;
        g->argmax = ggml_argmax(ctx, (struct ggml_tensor *) src);
        ggml_set_name(g->argmax, "batched_greedy_argmax");
    }
    const size_t row = logits->view_offs / src->nb[1];
    data->sampled = ggml_view_1d(ctx, g->argmax, 1, row * ggml_element_size(g->argmax));
    data->logits = NULL; /* nothing else to copy to the host */
}

static void greedy_backend_reset(struct llama_sampler * smpl) {
    struct greedy_group * g = ((struct greedy_sampler *) smpl->ctx)->group;
    g->src = NULL;
    g->argmax = NULL;
}

static struct llama_sampler_i greedy_iface = {
    /* .name              = */ greedy_name,
    /* .accept            = */ NULL,
    /* .apply             = */ greedy_apply,
    /* .reset             = */ NULL,
    /* .clone             = */ greedy_clone,
    /* .free              = */ greedy_free,
    /* .backend_init      = */ greedy_backend_init,
    /* .backend_accept    = */ NULL,
    /* .backend_apply     = */ greedy_backend_apply,
    /* .backend_set_input = */ NULL,
    /* .backend_reset     = */ greedy_backend_reset,
    /* .copy_state        = */ NULL,
};

static struct llama_sampler * greedy_new(struct greedy_group * g) {
    struct greedy_sampler * s = (struct greedy_sampler *) calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->group = g;
    g->refs++;
    return llama_sampler_init(&greedy_iface, s);
}

/* A greedy sampler of group g (add it to a chain, attach the chain with llama_set_sampler). */
LLAMA_BINDING_EXPORT struct llama_sampler * llama_binding_greedy_sampler_new(struct greedy_group * g) {
    return g == NULL ? NULL : greedy_new(g);
}
