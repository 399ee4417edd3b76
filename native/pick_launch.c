/* The batching engine's pipelined step in one native call, without Python's GIL: wait for the
 * queued decode, pick every row's token, and queue the next decode with the rows that go on.
 *
 * BatchEngine's pipeline (on a GPU) queues a busy step's next decode right after the picks,
 * before the per-request bookkeeping. Done from Python, the thread waiting for the device
 * must take the GIL back before it can pick and queue: while the event loop's thread runs
 * (handing the last step's tokens on: 64 streams' chunks), that wait is up to the switch
 * interval, and the device is idle meanwhile. Here the wait, the picks (the rows functions
 * of step.c), the checks that decide which rows go on (a token that ends its request does
 * not: end of generation, the request's token limit, its cells) and the next decode's
 * queuing follow each other in C; Python gets the GIL back while the device computes.
 *
 * The rows come grouped: the first n_chain sampled with their own chains (each accepts its
 * token), the next n_backend read from their sequences' backend samplers, the rest the
 * argmax of their logits. A row goes on when its token is a token (not a failed pick), its
 * room (the tokens its request may take after this one) is positive and the token does not
 * end generation (unless the request ignores that). With at least min_go rows going on,
 * the rows that end have their cells dropped first (free_ending: a unified cache, where the
 * engine would drop them before queuing, so the next decode's cells are the same), then
 * the batch is built in `order` (for a cache per sequence: ascending sequence ids) and
 * queued; next_row[k] is row k's index in it, or -1. A request submitted while the call
 * waits knocks (a flag read after the picks): then nothing is queued, so that the engine's
 * next step admits it rather than the step after.
 */
#include <stdint.h>
#if defined(_WIN32)
#include <windows.h>
#else
#include <time.h>
#endif

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define LLAMA_BINDING_NOT_DECODED INT32_MIN
#define LLAMA_BINDING_NO_TOKEN (INT32_MIN + 3)

struct llama_binding_abort; /* step.c's */

/* step.c's, exported */
int32_t llama_binding_decode_launch(struct llama_context * ctx, struct llama_batch * batch,
                                    struct llama_binding_abort * abort);
int32_t llama_binding_sample_rows(struct llama_context * ctx, const struct llama_vocab * vocab,
                                  struct llama_sampler ** chains, const int32_t * top_k, const int32_t * rows,
                                  int32_t n, llama_token * out, int32_t n_threads);
int32_t llama_binding_sampled_rows(struct llama_context * ctx, const int32_t * rows, int32_t n, llama_token * out);
int32_t llama_binding_argmax_rows(struct llama_context * ctx, const struct llama_vocab * vocab, const int32_t * rows,
                                  int32_t n, llama_token * out, int32_t n_threads);

/* what Python passes (core/_native.py's PickLaunch); outputs at the end */
struct llama_binding_pick_launch {
    int32_t n;          /* rows */
    int32_t n_chain;    /* the first n_chain: sampled with chains[k] */
    int32_t n_backend;  /* the next n_backend: their backend sampler's token; the rest: argmax */
    int32_t n_threads;  /* for the rows functions */
    int32_t min_go;     /* queue the next decode only with at least this many rows going on */
    int32_t free_ending; /* drop the cells of the rows that end before queuing */
    const int32_t * rows;       /* each row's batch index in the decode waited for */
    struct llama_sampler ** chains;
    const int32_t * top_k;      /* per chain row: its leading cut (a top-k's k, a top-p's code; 0: none) */
    const int32_t * room;       /* tokens the row's request may take after this one */
    const uint8_t * ignore_eos;
    const int32_t * pos;        /* the position of the row's next token */
    const int32_t * seq_id;
    const int32_t * order;      /* the rows in the next batch's order (a permutation) */
    const volatile int32_t * knock; /* nonzero (set by another thread meanwhile): a request is on
                                     * its way, queue nothing (it joins the engine's next step) */
    llama_token * picked;       /* out: each row's token (negative: none, as the rows functions') */
    int32_t * next_row;         /* out: each row's index in the queued batch, or -1 */
    int32_t pick_code;          /* out: the first rows function's failure, or 0 */
    int32_t n_go;               /* out: rows that go on */
    double waited_s;            /* out: waiting for the device */
    double picked_s;            /* out: the picks */
    double end;                 /* out: llama_binding_now() on return */
};

/* seconds of a monotonic clock (what the engine's timings of this call set themselves against) */
LLAMA_BINDING_EXPORT double llama_binding_now(void) {
#if defined(_WIN32)
    LARGE_INTEGER freq, t;
    QueryPerformanceFrequency(&freq);
    QueryPerformanceCounter(&t);
    return (double) t.QuadPart / (double) freq.QuadPart;
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double) ts.tv_sec + 1e-9 * (double) ts.tv_nsec;
#endif
}

/* llama_synchronize, then llama_binding_now(): when the device finished (the engine counts
 * the time from there until it holds the GIL again) */
LLAMA_BINDING_EXPORT double llama_binding_synchronize(struct llama_context * ctx) {
    llama_synchronize(ctx);
    return llama_binding_now();
}

/* the picks, group by group; 0, or the first failure other than a row that got no token */
static int32_t pick(struct llama_context * ctx, const struct llama_vocab * vocab,
                    const struct llama_binding_pick_launch * p) {
    int32_t code = 0;
    const int32_t n_host = p->n - p->n_chain - p->n_backend;
    if (p->n_chain > 0) {
        code = llama_binding_sample_rows(ctx, vocab, p->chains, p->top_k, p->rows, p->n_chain, p->picked,
                                         p->n_threads);
        if (code == LLAMA_BINDING_NO_TOKEN) {
            code = 0; /* those rows hold a negative token: they end (the engine says why) */
        }
    }
    if (code == 0 && p->n_backend > 0) {
        code = llama_binding_sampled_rows(ctx, p->rows + p->n_chain, p->n_backend, p->picked + p->n_chain);
    }
    if (code == 0 && n_host > 0) {
        const int32_t at = p->n_chain + p->n_backend;
        code = llama_binding_argmax_rows(ctx, vocab, p->rows + at, n_host, p->picked + at, p->n_threads);
    }
    return code;
}

/* Returns llama_decode's code for the queued decode, or LLAMA_BINDING_NOT_DECODED when none
 * was queued (a pick failed: pick_code; fewer than min_go rows go on; a knock). */
LLAMA_BINDING_EXPORT int32_t llama_binding_pick_launch(struct llama_context * ctx, const struct llama_vocab * vocab,
                                                       struct llama_batch * batch, struct llama_binding_abort * abort,
                                                       struct llama_binding_pick_launch * p) {
    const double t0 = llama_binding_now();
    llama_synchronize(ctx);
    const double t1 = llama_binding_now();
    p->waited_s = t1 - t0;
    p->pick_code = pick(ctx, vocab, p);
    p->picked_s = llama_binding_now() - t1;
    p->n_go = 0;
    for (int32_t k = 0; k < p->n; k++) {
        const llama_token tok = p->picked[k];
        const int go = p->pick_code == 0 && tok >= 0 && p->room[k] > 0 &&
                       (p->ignore_eos[k] || !llama_vocab_is_eog(vocab, tok));
        p->next_row[k] = go ? 0 : -1;
        p->n_go += go;
    }
    if (p->pick_code != 0 || p->n_go < p->min_go || *p->knock != 0) {
        for (int32_t k = 0; k < p->n; k++) {
            p->next_row[k] = -1;
        }
        p->end = llama_binding_now();
        return LLAMA_BINDING_NOT_DECODED;
    }
    if (p->free_ending) {
        llama_memory_t mem = llama_get_memory(ctx);
        for (int32_t k = 0; k < p->n; k++) {
            if (p->next_row[k] < 0) {
                llama_memory_seq_rm(mem, p->seq_id[k], -1, -1);
            }
        }
    }
    int32_t i = 0;
    for (int32_t j = 0; j < p->n; j++) {
        const int32_t k = p->order[j];
        if (p->next_row[k] < 0) {
            continue;
        }
        batch->token[i] = p->picked[k];
        batch->pos[i] = p->pos[k];
        batch->n_seq_id[i] = 1;
        batch->seq_id[i][0] = p->seq_id[k];
        batch->logits[i] = 1;
        p->next_row[k] = i++;
    }
    batch->n_tokens = i;
    const int32_t code = llama_binding_decode_launch(ctx, batch, abort);
    p->end = llama_binding_now();
    return code;
}
