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
 */
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#if !defined(_WIN32)
#include <pthread.h>
#endif

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define LLAMA_BINDING_NOT_DECODED INT_MIN
#define LLAMA_BINDING_NO_LOGITS (INT_MIN + 1)
#define LLAMA_BINDING_NO_MEMORY (INT_MIN + 2)
#define ARGMAX_BLOCK 256

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

/* The index of the largest of x[0..n) (the first one on ties; NaN never wins; 0 when all
 * are -inf or NaN), as llama.cpp's greedy sampler picks. The first pass takes each block's
 * maximum as a SIMD reduction (1.4 us for 49k logits with AVX2 against 6.6 us scalar);
 * then only the winning block is scanned for the index. */
static llama_token argmax_f32(const float * x, int32_t n) {
    float best = -INFINITY;
    int32_t best_from = -1;
    int32_t i = 0;
    for (; i + ARGMAX_BLOCK <= n; i += ARGMAX_BLOCK) {
        float bm = -INFINITY; /* lanes start at -inf and take only larger values: never NaN */
#pragma omp simd reduction(max : bm)
        for (int j = 0; j < ARGMAX_BLOCK; j++) {
            bm = x[i + j] > bm ? x[i + j] : bm;
        }
        if (bm > best) {
            best = bm;
            best_from = i;
        }
    }
    int32_t best_idx = 0;
    if (best_from >= 0) {
        for (int32_t j = best_from; j < best_from + ARGMAX_BLOCK; j++) {
            if (x[j] == best) {
                best_idx = j;
                break;
            }
        }
    }
    for (int32_t j = i; j < n; j++) { /* the tail after the last whole block */
        if (x[j] > best) {
            best = x[j];
            best_idx = j;
        }
    }
    return best_idx;
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
    if (!decode_next || llama_vocab_is_eog(vocab, token)) {
        return LLAMA_BINDING_NOT_DECODED;
    }
    return llama_binding_decode_token(ctx, batch, abort, token, pos, seq_id);
}

/* The argmax of the logits of each of the n batch indices rows[0..n) of the last decode,
 * into out[0..n): plain greedy for many sequences in one call (the batching engine).
 * With n_threads > 1 and enough logits (ARGMAX_THREADED_MIN floats in all), the rows are
 * split between that many threads (on an H200's host, 64 fresh rows of a 128k vocabulary,
 * 32 MB: 2.0 ms on one thread, 1.3 ms on eight; on a GPU the engine rather takes greedy
 * tokens in the decode, batch_greedy.c). Returns 0, LLAMA_BINDING_NO_LOGITS when a row has
 * no logits (then out is not written), or LLAMA_BINDING_NO_MEMORY. */
#define ARGMAX_THREADED_MIN (1 << 20)
#define ARGMAX_MAX_THREADS 32

struct argmax_job {
    const float * const * logits;
    int32_t n;
    int32_t n_vocab;
    llama_token * out;
};

static void * argmax_job_run(void * arg) {
    const struct argmax_job * job = (const struct argmax_job *) arg;
    for (int32_t k = 0; k < job->n; k++) {
        job->out[k] = argmax_f32(job->logits[k], job->n_vocab);
    }
    return NULL;
}

LLAMA_BINDING_EXPORT int32_t llama_binding_argmax_rows(struct llama_context * ctx, const struct llama_vocab * vocab,
                                                       const int32_t * rows, int32_t n, llama_token * out,
                                                       int32_t n_threads) {
    const int32_t n_vocab = llama_vocab_n_tokens(vocab);
    const float ** logits = (const float **) malloc(sizeof(float *) * (size_t) (n > 0 ? n : 1));
    if (logits == NULL) {
        return LLAMA_BINDING_NO_MEMORY;
    }
    for (int32_t k = 0; k < n; k++) { /* llama_get_logits_ith is not for several threads */
        logits[k] = llama_get_logits_ith(ctx, rows[k]);
        if (logits[k] == NULL) {
            free(logits);
            return LLAMA_BINDING_NO_LOGITS;
        }
    }
    if ((int64_t) n * n_vocab < ARGMAX_THREADED_MIN) {
        n_threads = 1; /* a thread costs more than it saves */
    }
    n_threads = n_threads > n ? n : n_threads;
    n_threads = n_threads > ARGMAX_MAX_THREADS ? ARGMAX_MAX_THREADS : n_threads;
    n_threads = n_threads < 1 ? 1 : n_threads;
    struct argmax_job jobs[ARGMAX_MAX_THREADS];
#if !defined(_WIN32)
    pthread_t threads[ARGMAX_MAX_THREADS];
    int started[ARGMAX_MAX_THREADS] = {0};
#endif
    int32_t from = 0;
    for (int32_t t = 0; t < n_threads; t++) { /* contiguous shares; thread 0 is this one */
        const int32_t count = n / n_threads + (t < n % n_threads ? 1 : 0);
        jobs[t] = (struct argmax_job) {logits + from, count, n_vocab, out + from};
        from += count;
#if !defined(_WIN32)
        if (t > 0) {
            started[t] = pthread_create(&threads[t], NULL, argmax_job_run, &jobs[t]) == 0;
        }
#endif
    }
    argmax_job_run(&jobs[0]);
    for (int32_t t = 1; t < n_threads; t++) {
#if !defined(_WIN32)
        if (started[t]) {
            pthread_join(threads[t], NULL);
            continue;
        }
#endif
        argmax_job_run(&jobs[t]); /* no thread for it: do it here */
    }
    free(logits);
    return 0;
}

/* The token that the sequence's backend (GPU-side) sampler picked for each of the n batch
 * indices rows[0..n) of the last decode, into out[0..n). Returns 0, or
 * LLAMA_BINDING_NO_LOGITS when a row has no backend-sampled token. */
LLAMA_BINDING_EXPORT int32_t llama_binding_sampled_rows(struct llama_context * ctx, const int32_t * rows, int32_t n,
                                                        llama_token * out) {
    for (int32_t k = 0; k < n; k++) {
        const llama_token token = llama_get_sampled_token_ith(ctx, rows[k]);
        if (token == LLAMA_TOKEN_NULL) {
            return LLAMA_BINDING_NO_LOGITS;
        }
        out[k] = token;
    }
    return 0;
}
