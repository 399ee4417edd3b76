/* Top-k candidates of many sequences on the backend, in one set of nodes, for sampled decoding.
 *
 * A sampler of a group, attached to a sequence with llama_set_sampler, makes the decode bring
 * back a few hundred candidates of each of its output rows that surely hold the row's k (the
 * group's, 64) largest logits, not the whole row: the rest of the request's chain (top-k with
 * the request's own k <= 64, top-p, min-p, temperature, the seeded draw, ...) runs on the host
 * over those candidates (llama_binding_sample / _sample_rows), as llama.cpp's chain would on
 * the whole row, with the same result. The attached sampler does not depend on the request's
 * options, so changing them between requests attaches nothing and llama.cpp keeps its graphs
 * (re-attaching costs a graph rebuild, about 7 ms on an H200).
 *
 * The candidates are found without sorting the row (a top-k over a 128k row sorts it all on
 * CUDA 13.0) and without gathering single elements (ggml's get_rows launches a block per
 * gathered row): cut the row into chunks of C1 logits (128 for a 128,256-token vocabulary),
 * take each chunk's maximum (a max pool), keep the k chunks with the largest maxima (a top-k
 * over at most 1,024 values: one bitonic sort) and gather them whole; then the same over that
 * union with chunks of 8. Every one of the row's k largest logits lies in a kept chunk at both
 * stages: a logit x outside them is beaten by the maxima of k chunks that were kept, k
 * logits larger than x. A row so brings back 8k logits and 2k chunk indices (the k of the first
 * stage, then the k of the second), from which llama_binding_topk_ids recovers each logit's
 * token id. Both come back as one row of 10k floats, ggml's "sampled logits" of the row
 * (the indices as floats, exact below 2^24; no "candidates"): llama.cpp copies each tensor
 * of each row back on its own, and one copy a row instead of two saves 64 of the 128 small
 * device-to-host copies of a 64-row step (llama_binding_topk_unpack splits the row). A
 * vocabulary that no chunk of 16 to 128 divides (or a small one) takes a plain top-k of the
 * row: k logits, and their ids as the candidates.
 *
 * Every row of the decode's logits matrix goes through the same nodes (the first sampler
 * applied in a graph builds them, the others take their row), so the cost hardly grows with
 * the number of sequences. A group lives while its owner holds it or any of its samplers
 * does. llama.cpp calls backend_reset on every attached sampler before it builds a sampling
 * graph, which clears the group's nodes, so a node of an old graph is never used.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "batch_topk.h"
#include "ggml-backend.h"
#include "ggml.h"
#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define TOPK_SORT_MAX 1024 /* the longest row CUDA's top-k sorts in one bitonic kernel */
#define TOPK_C2 8          /* the second stage's chunk */

struct topk_group {
    int refs;
    int32_t k;
    const struct ggml_tensor * src; /* the logits matrix of the graph being built */
    struct ggml_tensor * vals;      /* [10k, rows]: logits and chunk indices, or [k, rows]: logits */
    struct ggml_tensor * ids;       /* NULL, or [k, rows]: a plain top-k's token ids (I32) */
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
    if (k < 1 || k > TOPK_SORT_MAX / (128 / TOPK_C2)) {
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

/* The first stage's chunk for rows of n logits and k candidates: the largest of 128, 64, 32,
 * 16 that divides n into at least k chunks; 0 where none does, or the row is short enough to
 * sort at once (a plain top-k). */
static int64_t stage_chunk(int64_t n, int32_t k) {
    if (n <= TOPK_SORT_MAX) {
        return 0;
    }
    for (int64_t c = 128; c >= 16; c /= 2) {
        if (n % c == 0 && n / c >= k) {
            return c;
        }
    }
    return 0;
}

/* The k largest of each row of x [n, rows] (F32, contiguous): into *vals and *ids as the
 * header says (staged: [10k, rows], the 8k logits then the 2k chunk indices as floats, and
 * NULL; plain, or where no chunk fits: [min(k, n), rows] each). */
static void build_topk(struct ggml_context * ctx, struct ggml_tensor * x, int32_t k, bool plain,
                       struct ggml_tensor ** vals, struct ggml_tensor ** ids) {
    const int64_t n = x->ne[0];
    const int64_t rows = x->ne[1];
    const int64_t c1 = plain ? 0 : stage_chunk(n, k);
    if (c1 == 0) {
        const int32_t kk = k < n ? k : (int32_t) n;
        struct ggml_tensor * best = ggml_top_k(ctx, x, kk); /* [kk, rows] */
        *vals = ggml_reshape_2d(ctx, ggml_get_rows(ctx, ggml_reshape_3d(ctx, x, 1, n, rows), best), kk, rows);
        *ids = best;
    } else {
        const int64_t nb = n / c1;
        struct ggml_tensor * maxima = ggml_pool_1d(ctx, x, GGML_OP_POOL_MAX, (int) c1, (int) c1, 0); /* [nb, rows] */
        struct ggml_tensor * chunks = ggml_top_k(ctx, maxima, k);                                    /* [k, rows] */
        struct ggml_tensor * u = ggml_get_rows(ctx, ggml_reshape_3d(ctx, x, c1, nb, rows), chunks); /* [c1, k, rows] */
        const int64_t nu = c1 * k / TOPK_C2;
        u = ggml_reshape_2d(ctx, u, c1 * k, rows);
        struct ggml_tensor * maxima2 = ggml_pool_1d(ctx, u, GGML_OP_POOL_MAX, TOPK_C2, TOPK_C2, 0); /* [nu, rows] */
        struct ggml_tensor * chunks2 = ggml_top_k(ctx, maxima2, k);
        struct ggml_tensor * v = ggml_get_rows(ctx, ggml_reshape_3d(ctx, u, TOPK_C2, nu, rows), chunks2);
        struct ggml_tensor * idx = ggml_cast(ctx, ggml_concat(ctx, chunks, chunks2, 0), GGML_TYPE_F32); /* [2k, rows] */
        *vals = ggml_concat(ctx, ggml_reshape_2d(ctx, v, TOPK_C2 * k, rows), idx, 0);
        *ids = NULL;
    }
    ggml_set_name(*vals, "batched_topk_logits");
    if (*ids != NULL) {
        ggml_set_name(*ids, "batched_topk_ids");
    }
}

LLAMA_BINDING_EXPORT int32_t llama_binding_topk_unpack(int32_t n_vocab, const float * row, int32_t n,
                                                       llama_token * chunk_ids) {
    const int32_t k = n / (TOPK_C2 + 2);
    const int64_t c1 = k >= 1 ? stage_chunk(n_vocab, k) : 0;
    if (row == NULL || k < 1 || n != (TOPK_C2 + 2) * k || n >= n_vocab || c1 == 0) {
        return -1;
    }
    const int32_t n_logits = TOPK_C2 * k;
    for (int32_t i = 0; i < 2 * k; i++) {
        const float v = row[n_logits + i];
        const float end = (float) (i < k ? n_vocab / c1 : c1 * k / TOPK_C2); /* chunks of each stage */
        if (!(v >= 0.0f && v < end && v == (float) (int32_t) v)) {
            return -2;
        }
        chunk_ids[i] = (llama_token) v;
    }
    return n_logits;
}

LLAMA_BINDING_EXPORT int32_t llama_binding_topk_ids(int32_t n_vocab, const llama_token * chunk_ids, int32_t n_chunk_ids,
                                                    int32_t n_logits, llama_token * out) {
    return llama_binding_topk_ids_at(n_vocab, chunk_ids, n_chunk_ids, n_logits, NULL, n_logits, out);
}

LLAMA_BINDING_EXPORT int32_t llama_binding_topk_ids_at(int32_t n_vocab, const llama_token * chunk_ids,
                                                       int32_t n_chunk_ids, int32_t n_logits, const int32_t * at,
                                                       int32_t n_at, llama_token * out) {
    if (n_chunk_ids == n_logits) { /* a plain top-k: the ids themselves */
        for (int32_t j = 0; j < n_at; j++) {
            out[j] = chunk_ids[at != NULL ? at[j] : j];
        }
        return n_at;
    }
    const int32_t k = n_chunk_ids / 2;
    const int64_t c1 = stage_chunk(n_vocab, k);
    if (c1 == 0 || n_chunk_ids != 2 * k || n_logits != TOPK_C2 * k) {
        return -1;
    }
    const llama_token * first = chunk_ids;
    const llama_token * second = chunk_ids + k;
    for (int32_t j = 0; j < n_at; j++) {
        const int32_t i = at != NULL ? at[j] : j;
        const int64_t u = (int64_t) second[i / TOPK_C2] * TOPK_C2 + i % TOPK_C2; /* in the union */
        out[j] = (llama_token) ((int64_t) first[u / c1] * c1 + u % c1);
    }
    return n_at;
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
    struct ggml_init_params params = {ggml_tensor_overhead() * 16, NULL, true};
    struct ggml_context * ctx = ggml_init(params);
    if (ctx == NULL) {
        return false;
    }
    const int32_t k = ((struct topk_sampler *) smpl->ctx)->group->k;
    struct ggml_tensor * row = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, 128 * k, 4);
    struct ggml_tensor * maxima = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, TOPK_SORT_MAX, 4);
    struct ggml_tensor * idx = ggml_new_tensor_2d(ctx, GGML_TYPE_I32, k, 4);
    struct ggml_tensor * ops[] = {
        ggml_top_k(ctx, maxima, k),
        ggml_pool_1d(ctx, row, GGML_OP_POOL_MAX, 128, 128, 0),
        ggml_get_rows(ctx, ggml_reshape_3d(ctx, row, 128, k, 4), idx),
        ggml_concat(ctx, idx, idx, 0),
        ggml_cast(ctx, idx, GGML_TYPE_F32),
        ggml_concat(ctx, maxima, maxima, 0),
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
    if (!is_row) { /* anything else (llama.cpp's probe of the graph's size): a plain top-k */
        struct ggml_tensor * x = ggml_reshape_2d(ctx, ggml_cont(ctx, logits), ggml_nelements(logits), 1);
        struct ggml_tensor * vals = NULL;
        struct ggml_tensor * ids = NULL;
        build_topk(ctx, x, g->k, true, &vals, &ids);
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
        build_topk(ctx, (struct ggml_tensor *) src, g->k, false, &g->vals, &g->ids);
    }
    const size_t row = logits->view_offs / src->nb[1];
    data->logits = ggml_view_1d(ctx, g->vals, g->vals->ne[0], row * g->vals->nb[1]);
    if (g->ids != NULL) {
        data->candidates = ggml_view_1d(ctx, g->ids, g->ids->ne[0], row * g->ids->nb[1]);
    }
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
