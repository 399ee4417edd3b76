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
 * llama_binding_argmax_decode: the same with plain greedy, the argmax of the last output's
 *   logits (no sampler); LLAMA_BINDING_NO_LOGITS when the last decode has none.
 * llama_binding_sample: llama_sampler_sample with error codes instead of an abort, and a
 *   check that the pick means something (see sample_checked).
 *
 * Sampling never picks a token out of nothing: when every token's logit is -inf or NaN
 * (a logit bias or a logits processor that bans everything, a grammar whose allowed tokens
 * are all banned, NaN logits), llama.cpp's samplers still "select" one (greedy the first,
 * dist the last) and generation would go on with garbage. The functions here answer
 * LLAMA_BINDING_NOT_FINITE instead (the rows functions write LLAMA_BINDING_TOKEN_NOT_FINITE
 * into that row). The check costs one load and compare per sampled token: the selected
 * candidate's logit (and, where a sampler computed them, its probability) is finite
 * whenever any candidate had a finite logit.
 *
 * For the batching engine, many sequences' outputs of one decode in one call:
 * llama_binding_argmax_rows (plain greedy) and llama_binding_sample_rows (each row with its
 * own sampler chain), both spread over threads (rows_pool.c's, kept between calls);
 * llama_binding_sampled_rows reads the tokens that backend samplers picked.
 * llama_binding_decode_sync decodes a batch and waits for it in one call. Python binds the
 * rows functions and llama_binding_seq_rm so that they keep the GIL (they take
 * microseconds; see _native.py).
 *
 * Picking the candidates out of a row of logits (the argmax, the leading top-k's
 * selection) is select.c's (select.h); here the rows are fetched, put through the chains,
 * and spread over threads.
 */
#include <limits.h>
#include <stdbool.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if !defined(_WIN32)
#include <pthread.h>
#endif

#include "batch_topk.h"
#include "outputs.h"
#include "rows_pool.h"
#include "llama.h"
#include "select.h"
#include "top_p.h"
#include "penalties.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define LLAMA_BINDING_NOT_DECODED INT_MIN
#define LLAMA_BINDING_NO_LOGITS (INT_MIN + 1)
#define LLAMA_BINDING_NO_MEMORY (INT_MIN + 2)
#define LLAMA_BINDING_NO_TOKEN (INT_MIN + 3)
#define LLAMA_BINDING_NOT_FINITE (INT_MIN + 4)
/* what a rows function writes for a row whose logits were all -inf/NaN */
#define LLAMA_BINDING_TOKEN_NOT_FINITE (-2)

struct llama_binding_abort {
    int cancel;
    int interrupts_seen;
};

int llama_binding_interrupts(void); /* abort_flag.c */

/* The batching engine's decode: llama_decode of the whole batch, then llama_synchronize,
 * in one call (one release of Python's GIL, so one wait to take it back: while the event
 * loop's thread runs, each retaking waits up to the switch interval). The cancel flag as in
 * llama_binding_decode_token. */
LLAMA_BINDING_EXPORT int32_t llama_binding_decode_sync(struct llama_context * ctx, struct llama_batch * batch,
                                                       struct llama_binding_abort * abort) {
    if (abort->cancel) {
        return 2;
    }
    abort->interrupts_seen = llama_binding_interrupts();
    const int32_t code = llama_decode(ctx, *batch);
    if (code == 0) {
        llama_synchronize(ctx);
    }
    return code;
}

/* llama_binding_decode_sync without the wait: on an asynchronous backend (a GPU) it returns
 * once the batch's last micro-batch is queued, so that the caller's own work (handing the
 * last step's tokens on) runs while the device computes; llama_synchronize then waits. */
LLAMA_BINDING_EXPORT int32_t llama_binding_decode_launch(struct llama_context * ctx, struct llama_batch * batch,
                                                         struct llama_binding_abort * abort) {
    if (abort->cancel) {
        return 2;
    }
    abort->interrupts_seen = llama_binding_interrupts();
    return llama_decode(ctx, *batch);
}

/* llama_memory_seq_rm of the context's memory (the engine calls it holding the GIL) */
LLAMA_BINDING_EXPORT int32_t llama_binding_seq_rm(struct llama_context * ctx, llama_seq_id seq_id, llama_pos p0,
                                                  llama_pos p1) {
    return llama_memory_seq_rm(llama_get_memory(ctx), seq_id, p0, p1) ? 1 : 0;
}

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

/* Whether the selected candidate of a sampled array is a real pick: its logit is finite
 * and its probability, where a sampler computed one (0 otherwise: the arrays start so), is
 * not NaN. A -inf or NaN logit is selected only when no candidate had a finite one (greedy
 * takes the first, dist falls back to the last); a NaN probability means the softmax saw
 * NaN or +inf logits. */
static int picked_finite(const llama_token_data * d) {
    return isfinite(d->logit) && !isnan(d->p);
}

/* A buffer for n candidates, one per thread, kept between calls (as llama.cpp's chain
 * keeps its own): no allocation per token. Freed when the thread ends. */
#if !defined(_WIN32)
struct cand_buf {
    llama_token_data * data;
    size_t cap;
};

static pthread_key_t cand_key;
static pthread_once_t cand_once = PTHREAD_ONCE_INIT;

static void cand_free(void * p) {
    struct cand_buf * b = (struct cand_buf *) p;
    free(b->data);
    free(b);
}

static void cand_key_make(void) {
    (void) pthread_key_create(&cand_key, cand_free);
}

static llama_token_data * cand_get(size_t n) {
    pthread_once(&cand_once, cand_key_make);
    struct cand_buf * b = (struct cand_buf *) pthread_getspecific(cand_key);
    if (b == NULL) {
        b = (struct cand_buf *) calloc(1, sizeof(*b));
        if (b == NULL || pthread_setspecific(cand_key, b) != 0) {
            free(b);
            return NULL;
        }
    }
    if (b->cap < n) {
        llama_token_data * grown = (llama_token_data *) realloc(b->data, sizeof(llama_token_data) * n);
        if (grown == NULL) {
            return NULL;
        }
        b->data = grown;
        b->cap = n;
    }
    return b->data;
}

static void cand_put(llama_token_data * p) {
    (void) p; /* stays with the thread */
}
#else
static llama_token_data * cand_get(size_t n) {
    return (llama_token_data *) malloc(sizeof(llama_token_data) * (n > 0 ? n : 1));
}

static void cand_put(llama_token_data * p) {
    free(p);
}
#endif

/* What the last decode left for one output, read on the caller's thread (llama.cpp's
 * getters are not for several threads; row_sample then needs no context): the backend
 * sampler's token, or its candidates (probabilities, or logits with their ids or
 * batch_topk.c's chunk indices), or the host's logits of the whole vocabulary. */
struct out_row {
    llama_token token;       /* the backend's pick, or LLAMA_TOKEN_NULL */
    const float * probs;     /* the backend's probabilities, or NULL */
    const float * logits;    /* the backend's candidates' logits, or the host's logits */
    const llama_token * ids; /* the candidates' ids (NULL: the index is the id) */
    int32_t n;               /* candidates (the vocabulary for the host's logits) */
    int32_t n_ids;           /* ids given; n_ids != n: chunk indices (llama_binding_topk_ids) */
    int32_t n_vocab;
    llama_token unpacked[TOPK_IDS_MAX / 4]; /* the chunk indices of a packed row (ids points here) */
};

/* out_row for batch index idx: 0, or LLAMA_BINDING_NO_LOGITS (idx has no output). After
 * lb_outputs_sync (the reads here do not wait for the device). */
static int32_t row_fetch(struct llama_context * ctx, int32_t idx, struct out_row * r) {
    *r = (struct out_row) {lb_sampled_token(ctx, idx), NULL, NULL, NULL, 0, 0, 0};
    r->n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(llama_get_model(ctx)));
    if (r->token != LLAMA_TOKEN_NULL) {
        return 0;
    }
    r->probs = lb_sampled_probs(ctx, idx);
    r->logits = lb_sampled_logits(ctx, idx);
    r->ids = lb_sampled_candidates(ctx, idx);
    if (r->probs != NULL) {
        r->n = r->n_ids = (int32_t) lb_sampled_probs_count(ctx, idx);
    } else if (r->logits != NULL) {
        r->n = (int32_t) lb_sampled_logits_count(ctx, idx);
        r->n_ids = (int32_t) lb_sampled_candidates_count(ctx, idx);
        const int32_t m = r->n_ids == 0 && r->n <= TOPK_IDS_MAX * 10 / 8 /* (ids: the identity) */
                              ? llama_binding_topk_unpack(r->n_vocab, r->logits, r->n, r->unpacked)
                              : -1;
        if (m > 0) { /* batch_topk.c's one row: the logits, then their chunk indices */
            r->ids = r->unpacked;
            r->n_ids = r->n - m;
            r->n = m;
        } else if (m == -2) { /* its indices are not: no candidate (the row samples nothing) */
            r->n = 0;
        }
    } else {
        r->logits = lb_logits(ctx, idx);
        if (r->logits == NULL) {
            return LLAMA_BINDING_NO_LOGITS;
        }
        r->ids = NULL;
        r->n = r->n_vocab;
    }
    return 0;
}

/* whether a row's ids are batch_topk.c's chunk indices (llama_binding_topk_ids maps them) */
static int row_chunked(const struct out_row * r) {
    return r->probs == NULL && r->ids != NULL && r->n_ids > 0 && r->n_ids != r->n;
}

/* Only the top_k largest of a backend sampler's candidate logits (at most TOPK_IDS_MAX),
 * sorted, into cur: what the chain's leading top-k keeps, with only the kept ones' ids
 * mapped (about 1 us for 512 candidates, where building all of them and llama.cpp's
 * partial sort took 4-5). Answers top_k, 0 where this does not apply (no leading top-k,
 * more candidates, a NaN logit: the chain then sorts them all), or -1 (ids that fit no
 * layout). cur: room for r->n. */
static int32_t row_top_k(const struct out_row * r, int32_t top_k, llama_token_data * cur) {
    const float * x = r->logits;
    const int32_t n = r->n;
    if (top_k <= 0 || top_k >= n || n > TOPK_IDS_MAX) {
        return 0;
    }
    int nan = 0;
    for (int32_t i = 0; i < n; i++) {
        nan |= isnan(x[i]);
    }
    if (nan) {
        return 0;
    }
    int32_t at[TOPK_IDS_MAX];
    small_top_k(x, n, top_k, at);
    llama_token ids[TOPK_IDS_MAX];
    if (row_chunked(r)) {
        if (llama_binding_topk_ids_at(r->n_vocab, r->ids, r->n_ids, n, at, top_k, ids) < 0) {
            return -1;
        }
    } else {
        for (int32_t j = 0; j < top_k; j++) {
            ids[j] = r->ids[at[j]];
        }
    }
    for (int32_t j = 0; j < top_k; j++) {
        cur[j] = (llama_token_data) {ids[j], x[at[j]], 0.0f};
    }
    cand_sort_desc(cur, top_k);
    return top_k;
}

/* Every candidate of a backend sampler's row into cur: r->n, or -1 (ids that fit no layout) */
static int32_t row_all(const struct out_row * r, llama_token_data * cur) {
    const llama_token * ids = r->ids;
    llama_token mapped[TOPK_IDS_MAX];
    if (row_chunked(r)) {
        if (r->n > TOPK_IDS_MAX || llama_binding_topk_ids(r->n_vocab, ids, r->n_ids, r->n, mapped) < 0) {
            return -1;
        }
        ids = mapped;
    }
    for (int32_t i = 0; i < r->n; i++) {
        cur[i] = (llama_token_data) {ids != NULL ? ids[i] : (llama_token) i, r->logits != NULL ? r->logits[i] : 0.0f,
                                     r->probs != NULL ? r->probs[i] : 0.0f};
    }
    return r->n;
}

/* What llama_sampler_sample does with one output (the backend's token, or its candidates,
 * or the host's logits, through the chain, then accept), answering codes where it would
 * abort: 0 with *out set, LLAMA_BINDING_NO_TOKEN (the chain selected nothing),
 * LLAMA_BINDING_NOT_FINITE (every candidate -inf/NaN; nothing is accepted then),
 * LLAMA_BINDING_NO_MEMORY. top_k: the chain's leading top-k (0: none), so that the
 * candidates are cut to it before the chain runs (the same result, sorted); negative: the
 * chain leads with a top-p whose p has the bits -top_k (top_p_of), which host_top_p applies
 * to the host's logits before the chain's other samplers (llama.cpp's result, without its
 * sort of the whole row). Touches no context: rows of one decode run on several threads,
 * each chain on one. */
/* The p of a leading top-p from its code in a top_k argument (negative: -(p's bits)) */
static float top_p_of(int32_t code) {
    const uint32_t bits = (uint32_t) -(int64_t) code;
    float p;
    memcpy(&p, &bits, sizeof(p));
    return p;
}

/* The chain over cur_p (from its second sampler on with skip_first: the native step did
 * its leading top-p), then the accept: 0 with *out set, LLAMA_BINDING_NO_TOKEN or
 * LLAMA_BINDING_NOT_FINITE (nothing accepted then) */
static int32_t chain_pick(llama_token_data_array * cur_p, struct llama_sampler * chain, int skip_first,
                          llama_token * out) {
    if (skip_first) {
        const int32_t n_chain = llama_sampler_chain_n(chain);
        for (int32_t i = 1; i < n_chain; i++) {
            llama_sampler_apply(llama_sampler_chain_get(chain, i), cur_p);
        }
    } else {
        llama_sampler_apply(chain, cur_p);
    }
    if (cur_p->selected < 0 || cur_p->selected >= (int64_t) cur_p->size) {
        return LLAMA_BINDING_NO_TOKEN;
    }
    if (!picked_finite(&cur_p->data[cur_p->selected])) {
        return LLAMA_BINDING_NOT_FINITE;
    }
    *out = cur_p->data[cur_p->selected].id;
    llama_sampler_accept(chain, *out);
    return 0;
}

/* For a chain of penalties (penalties.c's, whose window it reads) then a top-k of k: the
 * candidates that can reach the top-k after the penalties, in cur (room for n): the k + w
 * largest logits (w: the window's length) and the window's tokens. Only the window's logits
 * change, so the k largest after the penalties are among them (equal logits aside, where
 * llama.cpp's order is unspecified). Answers their count, 0 where this does not apply. */
static int32_t penalized_top_k(const float * x, int32_t n, struct llama_sampler * chain, int32_t k,
                               llama_token_data * cur) {
    const llama_token * ring = NULL;
    const int32_t w = lb_penalties_window(llama_sampler_chain_get(chain, 0), &ring);
    if (w < 0 || k <= 0 || k + w >= n || top_k_block(n, k + w) == 0) {
        return 0;
    }
    const int32_t m = k + w;
    if ((int32_t) host_candidates(x, n, m, cur) != m) { /* (NaN among the best: every candidate) */
        return 0;
    }
    const float bound = cur[m - 1].logit; /* every logit above it is in cur[0..m) */
    int32_t size = m;
    for (int32_t j = 0; j < w; j++) {
        const llama_token t = ring[j];
        if (t < 0 || t >= n || x[t] > bound) {
            continue;
        }
        int in = 0; /* below the bound it is not among the m; at it, it may be */
        for (int32_t i = x[t] == bound ? 0 : m; i < size && !in; i++) {
            in = cur[i].id == t;
        }
        if (!in) {
            cur[size++] = (llama_token_data) {t, x[t], 0.0f};
        }
    }
    return size;
}

/* chain_pick over the host's n logits x, cut first as the chain allows (cut: row_sample's
 * top_k); cur: room for n candidates, 3 n for a top-p's code */
static int32_t host_pick(const float * x, int32_t n, struct llama_sampler * chain, int32_t cut,
                         llama_token_data * cur, llama_token * out) {
    if (cut > 0 && (cut & LB_CUT_PENALTIES)) {
        const int32_t kept = penalized_top_k(x, n, chain, cut & ~LB_CUT_PENALTIES, cur);
        const int32_t all = kept > 0 ? kept : (int32_t) host_candidates(x, n, 0, cur);
        llama_token_data_array cur_p = {cur, (size_t) all, -1, false}; /* the whole chain runs over them */
        return chain_pick(&cur_p, chain, 0, out);
    }
    int32_t kept = cut < 0 ? host_top_p(x, n, top_p_of(cut), cur) : 0;
    const int top_p_done = kept > 0;
    if (!top_p_done) {
        kept = (int32_t) host_candidates(x, n, cut, cur);
    }
    llama_token_data_array cur_p = {cur, (size_t) kept, -1, kept < n || top_p_done};
    return chain_pick(&cur_p, chain, top_p_done, out);
}

static int32_t row_sample(const struct out_row * r, struct llama_sampler * chain, int32_t top_k, llama_token * out) {
    if (r->token != LLAMA_TOKEN_NULL) {
        llama_sampler_accept(chain, r->token);
        *out = r->token;
        return 0;
    }
    if (r->n <= 0) { /* no candidate at all */
        return LLAMA_BINDING_NO_TOKEN;
    }
    const int host = r->probs == NULL && r->ids == NULL; /* the host's logits */
    llama_token_data * cur = cand_get((size_t) r->n * (host && top_k < 0 ? 3 : 1));
    if (cur == NULL) {
        return LLAMA_BINDING_NO_MEMORY;
    }
    int32_t code;
    if (host) {
        code = host_pick(r->logits, r->n, chain, top_k, cur, out);
    } else {
        int32_t n = r->probs == NULL ? row_top_k(r, top_k, cur) : 0;
        n = n == 0 ? row_all(r, cur) : n;
        llama_token_data_array cur_p = {cur, (size_t) (n > 0 ? n : 0), -1, n < r->n};
        code = n < 0 ? LLAMA_BINDING_NO_TOKEN : chain_pick(&cur_p, chain, 0, out);
    }
    cand_put(cur);
    return code;
}

/* row_sample of batch index idx; also LLAMA_BINDING_NO_LOGITS (idx has no output) */
static int32_t sample_checked(struct llama_context * ctx, struct llama_sampler * chain, int32_t idx,
                              int32_t top_k, llama_token * out) {
    struct out_row r;
    lb_outputs_sync(ctx);
    const int32_t code = row_fetch(ctx, idx, &r);
    return code != 0 ? code : row_sample(&r, chain, top_k, out);
}

LLAMA_BINDING_EXPORT int32_t llama_binding_sample(struct llama_context * ctx, struct llama_sampler * chain,
                                                  int32_t idx, int32_t top_k, llama_token * out_token) {
    return sample_checked(ctx, chain, idx, top_k, out_token);
}

LLAMA_BINDING_EXPORT int32_t llama_binding_sample_decode(struct llama_context * ctx, struct llama_sampler * chain,
                                                         const struct llama_vocab * vocab, struct llama_batch * batch,
                                                         struct llama_binding_abort * abort, llama_pos pos,
                                                         llama_seq_id seq_id, int32_t decode_next, int32_t top_k,
                                                         llama_token * out_token) {
    llama_token token = LLAMA_TOKEN_NULL;
    const int32_t code = sample_checked(ctx, chain, -1, top_k, &token);
    *out_token = token;
    if (code != 0) {
        return code;
    }
    if (!decode_next || llama_vocab_is_eog(vocab, token)) {
        return LLAMA_BINDING_NOT_DECODED;
    }
    return llama_binding_decode_token(ctx, batch, abort, token, pos, seq_id);
}

LLAMA_BINDING_EXPORT int32_t llama_binding_argmax_decode(struct llama_context * ctx, const struct llama_vocab * vocab,
                                                         struct llama_batch * batch, struct llama_binding_abort * abort,
                                                         llama_pos pos, llama_seq_id seq_id, int32_t decode_next,
                                                         llama_token * out_token) {
    const float * logits = llama_get_logits_ith(ctx, -1);
    if (logits == NULL) {
        return LLAMA_BINDING_NO_LOGITS;
    }
    const llama_token token = argmax_f32(logits, llama_vocab_n_tokens(vocab));
    *out_token = token;
    if (!isfinite(logits[token])) { /* argmax_f32 answers 0 when every logit is -inf or NaN */
        return LLAMA_BINDING_NOT_FINITE;
    }
    if (!decode_next || llama_vocab_is_eog(vocab, token)) {
        return LLAMA_BINDING_NOT_DECODED;
    }
    return llama_binding_decode_token(ctx, batch, abort, token, pos, seq_id);
}

/* The logits of each listed batch index of the last decode, fetched on this thread
 * (llama_get_logits_ith is not for several threads); NULL when one has none, or *oom. */
static const float ** rows_logits(struct llama_context * ctx, const int32_t * rows, int32_t n, int * oom) {
    const float ** logits = (const float **) malloc(sizeof(float *) * (size_t) (n > 0 ? n : 1));
    *oom = logits == NULL;
    if (logits == NULL) {
        return NULL;
    }
    lb_outputs_sync(ctx);
    for (int32_t k = 0; k < n; k++) {
        logits[k] = lb_logits(ctx, rows[k]);
        if (logits[k] == NULL) {
            free(logits);
            return NULL;
        }
    }
    return logits;
}

struct argmax_rows_arg {
    const float ** logits;
    int32_t n_vocab;
    llama_token * out;
};

static void argmax_rows_share(void * p, int32_t from, int32_t to) {
    const struct argmax_rows_arg * a = (const struct argmax_rows_arg *) p;
    for (int32_t k = from; k < to; k++) {
        const llama_token token = argmax_f32(a->logits[k], a->n_vocab);
        a->out[k] = isfinite(a->logits[k][token]) ? token : LLAMA_BINDING_TOKEN_NOT_FINITE;
    }
}

/* The argmax of the logits of each of the n batch indices rows[0..n) of the last decode,
 * into out[0..n): plain greedy for many sequences in one call (the batching engine).
 * With n_threads > 1 and enough logits (ARGMAX_THREADED_MIN floats in all), the rows are
 * split between that many threads (on an H200's host, 64 fresh rows of a 128k vocabulary,
 * 32 MB: 2.0 ms on one thread, 1.3 ms on eight; on a GPU the engine rather takes greedy
 * tokens in the decode, batch_greedy.c). Returns 0, LLAMA_BINDING_NO_LOGITS when a row has
 * no logits (then out is not written), or LLAMA_BINDING_NO_MEMORY. A row whose logits are
 * all -inf or NaN gets LLAMA_BINDING_TOKEN_NOT_FINITE (the caller raises). */
#define ARGMAX_THREADED_MIN (1 << 20)

LLAMA_BINDING_EXPORT int32_t llama_binding_argmax_rows(struct llama_context * ctx, const struct llama_vocab * vocab,
                                                       const int32_t * rows, int32_t n, llama_token * out,
                                                       int32_t n_threads) {
    int oom = 0;
    const float ** logits = rows_logits(ctx, rows, n, &oom);
    if (logits == NULL) {
        return oom ? LLAMA_BINDING_NO_MEMORY : LLAMA_BINDING_NO_LOGITS;
    }
    struct argmax_rows_arg arg = {logits, llama_vocab_n_tokens(vocab), out};
    const int many = (int64_t) n * arg.n_vocab >= ARGMAX_THREADED_MIN; /* else a thread costs more */
    lb_run_rows(argmax_rows_share, &arg, n, many ? n_threads : 1);
    free(logits);
    return 0;
}

struct sample_rows_arg {
    const float ** logits;
    struct llama_sampler ** chains;
    const int32_t * top_k; /* NULL, or per row: row_sample's top_k (a leading top-k's k, a top-p's code) */
    int32_t n_vocab;
    llama_token * out;
};

static void sample_rows_share(void * p, int32_t from, int32_t to) {
    const struct sample_rows_arg * a = (const struct sample_rows_arg *) p;
    int top_p = 0; /* (a top-p's code: room for 3 n_vocab) */
    for (int32_t k = from; k < to; k++) {
        top_p |= a->top_k != NULL && a->top_k[k] < 0;
    }
    llama_token_data * cur = cand_get((size_t) a->n_vocab * (top_p ? 3 : 1)); /* the caller's thread keeps it */
    for (int32_t k = from; k < to; k++) {
        a->out[k] = LLAMA_TOKEN_NULL;
        if (cur == NULL) {
            continue;
        }
        llama_token tok = LLAMA_TOKEN_NULL;
        const int32_t code = host_pick(a->logits[k], a->n_vocab, a->chains[k], a->top_k != NULL ? a->top_k[k] : 0,
                                       cur, &tok);
        /* nothing selected (a grammar that allows no token), or every logit -inf/NaN: the caller raises */
        a->out[k] = code == 0 ? tok : code == LLAMA_BINDING_NOT_FINITE ? LLAMA_BINDING_TOKEN_NOT_FINITE : LLAMA_TOKEN_NULL;
    }
    cand_put(cur);
}

#define SAMPLE_THREADED_MIN (1 << 17)
#define SAMPLE_TOP_K_SHARE 8

/* Sample the logits of each of the n batch indices rows[0..n) of the last decode with its
 * own sampler chain chains[k] (which accepts the token), into out[0..n), on up to n_threads
 * threads (one per SAMPLE_THREADED_MIN logits to sort, or SAMPLE_TOP_K_SHARE times as many
 * to take a top-k from, at most n_threads): what llama_sampler_sample does for one
 * row on the CPU, for many sequences at once (each chain is used by one thread only).
 * top_k: NULL, or per row the k of a top-k sampler that comes first in that chain (0: none),
 * whose candidates are then taken straight from the logits (top_k_select). Returns 0, LLAMA_BINDING_NO_LOGITS when a
 * row has no logits (nothing sampled), LLAMA_BINDING_NO_MEMORY, or LLAMA_BINDING_NO_TOKEN
 * when a chain selected nothing (out[k] is LLAMA_TOKEN_NULL there; the other rows are
 * sampled and accepted; a row whose logits were all -inf/NaN holds
 * LLAMA_BINDING_TOKEN_NOT_FINITE instead, and its chain accepted nothing). */
static int32_t sample_rows_host(struct llama_context * ctx, const struct llama_vocab * vocab,
                                struct llama_sampler ** chains, const int32_t * top_k, const int32_t * rows,
                                int32_t n, llama_token * out, int32_t n_threads);

static int32_t sample_host_subset(struct llama_context * ctx, const struct llama_vocab * vocab,
                                  struct llama_sampler ** chains, const int32_t * top_k, const int32_t * rows,
                                  llama_token * out, int32_t n_threads, const int32_t * host, int32_t n_host);

struct cand_rows_arg {
    const struct out_row * rows; /* the candidate rows, fetched */
    const int32_t * which;       /* each one's index in the caller's arrays */
    struct llama_sampler ** chains;
    const int32_t * top_k;
    llama_token * out;
    int32_t * codes; /* row_sample's, per candidate row */
};

static void cand_rows_share(void * p, int32_t from, int32_t to) {
    const struct cand_rows_arg * a = (const struct cand_rows_arg *) p;
    for (int32_t i = from; i < to; i++) {
        const int32_t k = a->which[i];
        a->codes[i] = row_sample(&a->rows[i], a->chains[k], a->top_k != NULL ? a->top_k[k] : 0, &a->out[k]);
    }
}

/* a thread per this many candidate rows (2-8 us each; waking a kept worker of rows_pool.c
 * costs less than the 40-70 us that starting a thread took on an H100's host) */
#define CAND_ROWS_PER_THREAD 32

/* Rows whose sequence has a backend sampler that left candidates (batch_topk.c: a few
 * hundred logits that hold the k best, and their ids) run their chains over those: fetched
 * here, sampled on up to n_threads threads (64 rows took 0.9 ms on one); the others are
 * sampled from their logits by sample_rows_host. */
LLAMA_BINDING_EXPORT int32_t llama_binding_sample_rows(struct llama_context * ctx, const struct llama_vocab * vocab,
                                                       struct llama_sampler ** chains, const int32_t * top_k,
                                                       const int32_t * rows, int32_t n, llama_token * out,
                                                       int32_t n_threads) {
    const size_t m = (size_t) (n > 0 ? n : 1);
    int32_t * buf = (int32_t *) malloc(sizeof(int32_t) * 3 * m);
    struct out_row * fetched = (struct out_row *) malloc(sizeof(struct out_row) * m);
    if (buf == NULL || fetched == NULL) {
        free(buf);
        free(fetched);
        return LLAMA_BINDING_NO_MEMORY;
    }
    int32_t * host = buf;
    int32_t * which = buf + m;
    int32_t * codes = buf + 2 * m;
    int32_t n_host = 0;
    int32_t n_cand = 0;
    lb_outputs_sync(ctx); /* once: the reads below do not wait for the device */
    for (int32_t k = 0; k < n; k++) {
        if (lb_sampled_logits(ctx, rows[k]) != NULL && row_fetch(ctx, rows[k], &fetched[n_cand]) == 0) {
            which[n_cand++] = k;
        } else {
            host[n_host++] = k;
        }
    }
    const struct cand_rows_arg arg = {fetched, which, chains, top_k, out, codes};
    const int32_t shares = n_cand / CAND_ROWS_PER_THREAD;
    lb_run_rows(cand_rows_share, (void *) &arg, n_cand, shares < 1 ? 1 : (shares < n_threads ? shares : n_threads));
    int32_t code = 0;
    for (int32_t i = 0; i < n_cand && code != LLAMA_BINDING_NO_MEMORY; i++) {
        const int32_t k = which[i];
        if (codes[i] == LLAMA_BINDING_NO_MEMORY) {
            code = codes[i];
        } else if (codes[i] != 0) {
            out[k] = codes[i] == LLAMA_BINDING_NOT_FINITE ? LLAMA_BINDING_TOKEN_NOT_FINITE : LLAMA_TOKEN_NULL;
            code = LLAMA_BINDING_NO_TOKEN;
        }
    }
    free(fetched);
    if (code != LLAMA_BINDING_NO_MEMORY && n_host > 0) {
        const int32_t c = sample_host_subset(ctx, vocab, chains, top_k, rows, out, n_threads, host, n_host);
        if (c != 0 && (code == 0 || c != LLAMA_BINDING_NO_TOKEN)) {
            code = c;
        }
    }
    free(buf);
    return code;
}

/* sample_rows_host of the rows host[0..n_host) of the caller's arrays (all of them: as they are) */
static int32_t sample_host_subset(struct llama_context * ctx, const struct llama_vocab * vocab,
                                  struct llama_sampler ** chains, const int32_t * top_k, const int32_t * rows,
                                  llama_token * out, int32_t n_threads, const int32_t * host, int32_t n_host) {
    int32_t n_all = 0; /* whether host is 0..n_host-1 */
    while (n_all < n_host && host[n_all] == n_all) {
        n_all++;
    }
    if (n_all == n_host) {
        return sample_rows_host(ctx, vocab, chains, top_k, rows, n_host, out, n_threads);
    }
    struct llama_sampler ** c2 = (struct llama_sampler **) malloc(sizeof(*c2) * (size_t) n_host);
    int32_t * buf = (int32_t *) malloc(sizeof(int32_t) * 3 * (size_t) n_host);
    if (c2 == NULL || buf == NULL) {
        free(c2);
        free(buf);
        return LLAMA_BINDING_NO_MEMORY;
    }
    int32_t * k2 = buf;
    int32_t * r2 = buf + n_host;
    llama_token * o2 = buf + 2 * n_host;
    for (int32_t i = 0; i < n_host; i++) { /* compacted, sampled, put back */
        c2[i] = chains[host[i]];
        k2[i] = top_k != NULL ? top_k[host[i]] : 0;
        r2[i] = rows[host[i]];
    }
    const int32_t c = sample_rows_host(ctx, vocab, c2, k2, r2, n_host, o2, n_threads);
    for (int32_t i = 0; i < n_host; i++) {
        out[host[i]] = o2[i];
    }
    free(c2);
    free(buf);
    return c;
}

static int32_t sample_rows_host(struct llama_context * ctx, const struct llama_vocab * vocab,
                                struct llama_sampler ** chains, const int32_t * top_k, const int32_t * rows,
                                int32_t n, llama_token * out, int32_t n_threads) {
    int oom = 0;
    const float ** logits = rows_logits(ctx, rows, n, &oom);
    if (logits == NULL) {
        return oom ? LLAMA_BINDING_NO_MEMORY : LLAMA_BINDING_NO_LOGITS;
    }
    struct sample_rows_arg arg = {logits, chains, top_k, llama_vocab_n_tokens(vocab), out};
    /* a thread costs about what a top-k row costs (tens of us): a share of several such rows
     * each, a whole row of llama.cpp's sort each (SAMPLE_THREADED_MIN logits) */
    int64_t work = 0;
    for (int32_t k = 0; k < n; k++) {
        const int fast = top_k != NULL && top_k_block(arg.n_vocab, top_k[k]) > 0;
        work += fast ? arg.n_vocab / SAMPLE_TOP_K_SHARE : arg.n_vocab;
    }
    const int64_t shares = work / SAMPLE_THREADED_MIN;
    lb_run_rows(sample_rows_share, &arg, n, shares > 1 ? (shares < n_threads ? (int32_t) shares : n_threads) : 1);
    free(logits);
    for (int32_t k = 0; k < n; k++) {
        if (out[k] < 0) {
            return LLAMA_BINDING_NO_TOKEN;
        }
    }
    return 0;
}

/* The token that the sequence's backend (GPU-side) sampler picked for each of the n batch
 * indices rows[0..n) of the last decode, into out[0..n). Returns 0, or
 * LLAMA_BINDING_NO_LOGITS when a row has no backend-sampled token. */
LLAMA_BINDING_EXPORT int32_t llama_binding_sampled_rows(struct llama_context * ctx, const int32_t * rows, int32_t n,
                                                        llama_token * out) {
    lb_outputs_sync(ctx);
    for (int32_t k = 0; k < n; k++) {
        const llama_token token = lb_sampled_token(ctx, rows[k]);
        if (token == LLAMA_TOKEN_NULL) {
            return LLAMA_BINDING_NO_LOGITS;
        }
        out[k] = token;
    }
    return 0;
}
