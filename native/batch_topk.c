/* Top-k candidates of many sequences on the backend, in one set of nodes, for sampled decoding.
 *
 * A sampler of a group, attached to a sequence with llama_set_sampler, makes the decode bring
 * back the k largest logits of each of its output rows and their token ids (k = the group's,
 * 64), not the whole row: the rest of the request's chain (top-k with the request's own k <=
 * 64, top-p, min-p, temperature, the seeded draw, ...) runs on the host over those candidates
 * (llama_binding_sample / _sample_rows), as llama.cpp's chain would on the whole row, with the
 * same result. The attached sampler does not depend on the request's options, so changing them
 * between requests attaches nothing and llama.cpp keeps its graphs (re-attaching costs a graph
 * rebuild, about 7 ms on an H200).
 *
 * The candidates are taken in stages that the GPU does fast: each row is cut into blocks of
 * 1024 logits (the tail padded with -inf), each block sorted in one kernel (CUDA's bitonic sort
 * for rows of up to 1024; a top-k over a 128k row would sort the whole row), its best k kept;
 * then again over those, until one block is left. Every row of the decode's logits matrix goes
 * through the same nodes (the first sampler applied in a graph builds them, the others take
 * their row), so the cost hardly grows with the number of sequences. Token ids ride along as
 * floats (exact below 2^24).
 *
 * A group lives while its owner holds it or any of its samplers does. llama.cpp calls
 * backend_reset on every attached sampler before it builds a sampling graph, which clears the
 * group's nodes, so a node of an old graph is never used.
 */
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

#define TOPK_BLOCK 1024

struct topk_group {
    int refs;
    int32_t k;
    const struct ggml_tensor * src; /* the logits matrix of the graph being built */
    struct ggml_tensor * vals;      /* [k', rows]: the candidates' logits */
    struct ggml_tensor * ids;       /* [k', rows]: their token ids (I32) */
};

struct topk_sampler {
    struct topk_group * group;
    struct llama_sampler * cpu; /* the same top-k on the host, where the backend cannot */
};

static void group_unref(struct topk_group * g) {
    if (--g->refs == 0) {
        free(g);
    }
}

LLAMA_BINDING_EXPORT struct topk_group * llama_binding_topk_group_new(int32_t k) {
    if (k < 1 || k > TOPK_BLOCK / 2) {
        return NULL;
    }
    struct topk_group * g = (struct topk_group *) calloc(1, sizeof(*g));
    if (g != NULL) {
        g->refs = 1;
        g->k = k;
    }
    return g;
}

LLAMA_BINDING_EXPORT void llama_binding_topk_group_release(struct topk_group * g) {
    if (g != NULL) {
        group_unref(g);
    }
}

/* x [n, rows] padded with -inf to n_pad columns (and ids, if any, with zeros) */
static struct ggml_tensor * pad_minus_inf(struct ggml_context * ctx, struct ggml_tensor * x, int64_t n_pad) {
    const int64_t n = x->ne[0];
    x = ggml_pad(ctx, x, (int) (n_pad - n), 0, 0, 0);
    /* 0 for a column j < n, -inf for the padding: log(1 - step(j - n + 0.5)) */
    struct ggml_tensor * j = ggml_arange(ctx, 0.0f, (float) n_pad, 1.0f);
    struct ggml_tensor * tail = ggml_step(ctx, ggml_scale_bias(ctx, j, 1.0f, 0.5f - (float) n));
    return ggml_add(ctx, x, ggml_log(ctx, ggml_scale_bias(ctx, tail, -1.0f, 1.0f)));
}

/* The k largest of each row of x [n, rows] (F32, contiguous): their values into *vals and
 * their column indices into *ids (I32), both [min(k, n), rows]. */
static void build_topk(struct ggml_context * ctx, struct ggml_tensor * x, int32_t k, struct ggml_tensor ** vals,
                       struct ggml_tensor ** ids) {
    const int64_t rows = x->ne[1];
    struct ggml_tensor * idf = NULL; /* the token id of each column of x, as floats (NULL: its index) */
    int64_t n = x->ne[0];
    while (n > TOPK_BLOCK) {
        const int64_t nb = (n + TOPK_BLOCK - 1) / TOPK_BLOCK;
        if (nb * TOPK_BLOCK > n) {
            x = pad_minus_inf(ctx, x, nb * TOPK_BLOCK);
            if (idf != NULL) {
                idf = ggml_pad(ctx, idf, (int) (nb * TOPK_BLOCK - n), 0, 0, 0);
            }
        }
        struct ggml_tensor * blocks = ggml_reshape_2d(ctx, x, TOPK_BLOCK, nb * rows);
        struct ggml_tensor * best = ggml_top_k(ctx, blocks, k); /* [k, nb*rows], within each block */
        struct ggml_tensor * v = ggml_get_rows(ctx, ggml_reshape_3d(ctx, blocks, 1, TOPK_BLOCK, nb * rows), best);
        if (idf == NULL) { /* the block's offset plus the index within it */
            struct ggml_tensor * iota = ggml_reshape_2d(ctx, ggml_arange(ctx, 0.0f, TOPK_BLOCK, 1.0f), 1, TOPK_BLOCK);
            struct ggml_tensor * local = ggml_get_rows(ctx, iota, ggml_reshape_1d(ctx, best, k * nb * rows));
            struct ggml_tensor * offs = ggml_arange(ctx, 0.0f, (float) (nb * TOPK_BLOCK), (float) TOPK_BLOCK);
            idf = ggml_add(ctx, ggml_reshape_3d(ctx, local, k, nb, rows), ggml_reshape_3d(ctx, offs, 1, nb, 1));
        } else {
            idf = ggml_get_rows(ctx, ggml_reshape_3d(ctx, idf, 1, TOPK_BLOCK, nb * rows), best);
        }
        idf = ggml_reshape_2d(ctx, idf, k * nb, rows);
        x = ggml_reshape_2d(ctx, v, k * nb, rows);
        n = k * nb;
    }
    const int32_t kk = k < n ? k : (int32_t) n;
    struct ggml_tensor * best = ggml_top_k(ctx, x, kk); /* [kk, rows] */
    *vals = ggml_reshape_2d(ctx, ggml_get_rows(ctx, ggml_reshape_3d(ctx, x, 1, n, rows), best), kk, rows);
    if (idf == NULL) {
        *ids = best;
    } else {
        struct ggml_tensor * f = ggml_get_rows(ctx, ggml_reshape_3d(ctx, idf, 1, n, rows), best);
        *ids = ggml_cast(ctx, ggml_reshape_2d(ctx, f, kk, rows), GGML_TYPE_I32);
    }
    ggml_set_name(*vals, "batched_topk_logits");
    ggml_set_name(*ids, "batched_topk_ids");
}

static const char * topk_name(const struct llama_sampler * smpl) {
    (void) smpl;
    return "batched-top-k";
}

static void topk_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p) {
    llama_sampler_apply(((struct topk_sampler *) smpl->ctx)->cpu, cur_p);
}

static struct llama_sampler * topk_new(struct topk_group * g);

static struct llama_sampler * topk_clone(const struct llama_sampler * smpl) {
    return topk_new(((const struct topk_sampler *) smpl->ctx)->group);
}

static void topk_free(struct llama_sampler * smpl) {
    struct topk_sampler * s = (struct topk_sampler *) smpl->ctx;
    llama_sampler_free(s->cpu);
    group_unref(s->group);
    free(s);
}

static bool topk_backend_init(struct llama_sampler * smpl, ggml_backend_buffer_type_t buft,
                              uint32_t n_outputs_max_per_seq) {
    (void) n_outputs_max_per_seq;
    ggml_backend_dev_t dev = ggml_backend_buft_get_device(buft);
    if (dev == NULL) {
        return true; /* the CPU backend runs every op */
    }
    struct ggml_init_params params = {ggml_tensor_overhead() * 8, NULL, true};
    struct ggml_context * ctx = ggml_init(params);
    if (ctx == NULL) {
        return false;
    }
    const int32_t k = ((struct topk_sampler *) smpl->ctx)->group->k;
    struct ggml_tensor * block = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, TOPK_BLOCK, 4);
    struct ggml_tensor * ops[] = {
        ggml_top_k(ctx, block, k),
        ggml_cast(ctx, block, GGML_TYPE_I32),
        ggml_step(ctx, block),
        ggml_log(ctx, block),
        ggml_arange(ctx, 0.0f, TOPK_BLOCK, 1.0f),
    };
    bool ok = true;
    for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
        ok = ok && ggml_backend_dev_supports_op(dev, ops[i]);
    }
    ggml_free(ctx);
    return ok;
}

static void topk_backend_apply(struct llama_sampler * smpl, struct ggml_context * ctx, struct ggml_cgraph * gf,
                               struct llama_sampler_data * data) {
    (void) gf;
    struct topk_group * g = ((struct topk_sampler *) smpl->ctx)->group;
    struct ggml_tensor * logits = data->logits;
    const struct ggml_tensor * src = logits->view_src;
    /* llama.cpp hands each sequence a row of the output logits matrix, as a 1-D view */
    const bool is_row = src != NULL && ggml_is_contiguous(src) && src->type == GGML_TYPE_F32 &&
                        ggml_is_matrix(src) && src->ne[0] == logits->ne[0] && ggml_n_dims(logits) == 1 &&
                        logits->view_offs % src->nb[1] == 0 && data->candidates == NULL;
    if (!is_row) { /* anything else (llama.cpp's probe of the graph's size): its own nodes */
        struct ggml_tensor * x = ggml_reshape_2d(ctx, ggml_cont(ctx, logits), ggml_nelements(logits), 1);
        struct ggml_tensor * vals = NULL;
        struct ggml_tensor * ids = NULL;
        build_topk(ctx, x, g->k, &vals, &ids);
        if (data->candidates != NULL) { /* ids into an earlier sampler's candidates */
            struct ggml_tensor * cand = ggml_reshape_2d(ctx, data->candidates, 1, ggml_nelements(data->candidates));
            ids = ggml_get_rows(ctx, cand, ggml_reshape_1d(ctx, ids, ggml_nelements(ids)));
        }
        data->logits = ggml_reshape_1d(ctx, vals, ggml_nelements(vals));
        data->candidates = ggml_reshape_1d(ctx, ids, ggml_nelements(ids));
        return;
    }
    if (g->vals == NULL || g->src != src) {
        g->src = src;
        build_topk(ctx, (struct ggml_tensor *) src, g->k, &g->vals, &g->ids);
    }
    const size_t row = logits->view_offs / src->nb[1];
    data->logits = ggml_view_1d(ctx, g->vals, g->vals->ne[0], row * g->vals->nb[1]);
    data->candidates = ggml_view_1d(ctx, g->ids, g->ids->ne[0], row * g->ids->nb[1]);
}

static void topk_backend_reset(struct llama_sampler * smpl) {
    struct topk_group * g = ((struct topk_sampler *) smpl->ctx)->group;
    g->src = NULL;
    g->vals = NULL;
    g->ids = NULL;
}

static struct llama_sampler_i topk_iface = {
    /* .name              = */ topk_name,
    /* .accept            = */ NULL,
    /* .apply             = */ topk_apply,
    /* .reset             = */ NULL,
    /* .clone             = */ topk_clone,
    /* .free              = */ topk_free,
    /* .backend_init      = */ topk_backend_init,
    /* .backend_accept    = */ NULL,
    /* .backend_apply     = */ topk_backend_apply,
    /* .backend_set_input = */ NULL,
    /* .backend_reset     = */ topk_backend_reset,
    /* .copy_state        = */ NULL,
};

static struct llama_sampler * topk_new(struct topk_group * g) {
    struct topk_sampler * s = (struct topk_sampler *) calloc(1, sizeof(*s));
    if (s == NULL) {
        return NULL;
    }
    s->cpu = llama_sampler_init_top_k(g->k);
    if (s->cpu == NULL) {
        free(s);
        return NULL;
    }
    s->group = g;
    g->refs++;
    return llama_sampler_init(&topk_iface, s);
}

/* A top-k sampler of group g (add it to a chain, attach the chain with llama_set_sampler). */
LLAMA_BINDING_EXPORT struct llama_sampler * llama_binding_topk_sampler_new(struct topk_group * g) {
    return g == NULL ? NULL : topk_new(g);
}
