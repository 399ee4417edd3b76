/* llama.cpp's top-p over a whole row of logits, the same result in a fraction of the time.
 *
 * llama_sampler_top_p_apply (src/llama-sampler.cpp) on a row of n > 1024 unsorted
 * candidates: a softmax in token order (the largest logit, then a float sum of
 * expf(logit - max) in token order, each p divided by it), the 256 largest sorted, their
 * p summed in that order until the sum reaches p; when it does not, every candidate is
 * sorted (a bucket pass, then std::sort in each bucket: 8-10 ms for 128k logits on a
 * 2-core EPYC) and the sum goes on. A chain without a top-k (top-k 0, top-p 0.9) pays that
 * sort whenever the top 256 hold less than p of the mass, as with a flat distribution.
 *
 * host_top_p computes the same p values (the same float operations in the same order,
 * with libm's expf: this file is built with the default flags, no -march=native and no
 * fast-math, so the compiler neither vectorizes the sums nor contracts them), takes the
 * 256 largest from select.c's top-k selection, and sorts the whole row, only when needed,
 * with a stable LSD radix sort on the logits' bits (three passes). Between equal logits
 * the lower token id comes first (llama.cpp's order among equal logits is unspecified);
 * otherwise the kept candidates, their order and their p are llama.cpp's, bit for bit.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "llama.h"
#include "select.h"
#include "top_p.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define TOP_P_FIRST 256 /* llama.cpp's first, partial sort */

/* A logit's bits as a key that orders as the logits do, descending (the largest first) */
static inline uint32_t desc_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    u = (u & 0x80000000u) ? ~u : (u | 0x80000000u); /* ascending */
    return ~u;
}

/* The token ids of x[0..n) by logit descending, lower id first on equal logits: a stable
 * LSD radix sort of (key << 32 | id) on the key's 11 + 11 + 10 bits; a and b: room for n
 * each; answers the one that holds the result. */
static uint64_t * ids_by_logit(const float * x, int32_t n, uint64_t * a, uint64_t * b) {
    static const int shift[3] = {32, 43, 54};
    static const uint32_t mask[3] = {2047u, 2047u, 1023u};
    uint32_t count[3][2048];
    memset(count, 0, sizeof(count));
    for (int32_t i = 0; i < n; i++) {
        const uint32_t k = desc_key(x[i]);
        a[i] = (uint64_t) k << 32 | (uint32_t) i;
        count[0][k & 2047u]++;
        count[1][(k >> 11) & 2047u]++;
        count[2][k >> 22]++;
    }
    for (int d = 0; d < 3; d++) {
        uint32_t sum = 0;
        for (uint32_t v = 0; v <= mask[d]; v++) {
            const uint32_t c = count[d][v];
            count[d][v] = sum;
            sum += c;
        }
        for (int32_t i = 0; i < n; i++) {
            b[count[d][(uint32_t) (a[i] >> shift[d]) & mask[d]]++] = a[i];
        }
        uint64_t * t = a;
        a = b;
        b = t;
    }
    return a;
}

int32_t host_top_p(const float * x, int32_t n, float p, llama_token_data * cur) {
    if (n <= 1024 || !(p > 0.0f) || !(p < 1.0f)) {
        return 0;
    }
    /* llama_sampler_softmax_impl(cur_p, false): the max as std::max keeps it, then each
     * expf(logit - max) (kept: e) and their float sum, in token order */
    float max_l = x[0];
    int nan = isnan(x[0]);
    for (int32_t i = 1; i < n; i++) {
        nan |= isnan(x[i]);
        max_l = max_l < x[i] ? x[i] : max_l;
    }
    if (nan || !isfinite(max_l)) { /* NaN, or nothing finite: llama.cpp's own chain says what */
        return 0;
    }
    float * e = (float *) (cur + n);     /* n floats after the n candidates */
    uint64_t * a = (uint64_t *) (e + n); /* then twice n ids with their keys */
    float cum_sum = 0.0f;
    for (int32_t i = 0; i < n; i++) {
        e[i] = expf(x[i] - max_l);
        cum_sum += e[i];
    }
    /* the 256 largest, sorted (as llama.cpp's first, partial sort): their p summed */
    int32_t have = (int32_t) host_candidates(x, n, TOP_P_FIRST, cur);
    if (have >= n) { /* (no selection for this n: all of them, sorted, below) */
        have = 0;
    }
    float sum = 0.0f;
    for (int32_t i = 0; i < have; i++) {
        cur[i].p = e[cur[i].id] / cum_sum;
        sum += cur[i].p;
        if (sum >= p) {
            return i + 1;
        }
    }
    /* less than p in them: every candidate, sorted, the sum going on from the first 256 */
    const uint64_t * ids = ids_by_logit(x, n, a, a + n);
    for (int32_t i = 0; i < n; i++) {
        const int32_t id = (int32_t) (uint32_t) ids[i];
        cur[i] = (llama_token_data) {id, x[id], e[id] / cum_sum};
        if (i < have) {
            continue;
        }
        sum += cur[i].p;
        if (sum >= p) {
            return i + 1;
        }
    }
    return n;
}

/* host_top_p for any float array (the tests' window on it): the kept candidates into out
 * (room for 3 n), answers their count, or 0 where host_top_p does not apply. */
LLAMA_BINDING_EXPORT int32_t llama_binding_top_p(const float * x, int32_t n, float p, llama_token_data * out) {
    if (x == NULL || out == NULL) {
        return 0;
    }
    return host_top_p(x, n, p, out);
}
