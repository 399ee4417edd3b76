/* Picking the candidates of one row of logits on the host, without building and sorting a
 * candidate per vocabulary entry: the greedy argmax (argmax_f32) and the k largest for a
 * chain that starts with top-k (top_k_select, through host_candidates; small_top_k for a
 * backend sampler's few hundred candidates), with their SIMD lane maxima, candidate heap
 * and sort, and the bit-by-bit k-th largest. step.c calls them (select.h); they touch no
 * context, so the rows functions run them on several threads. llama_binding_top_k is the
 * tests' window on top_k_select. Built with LLAMA_BINDING_STEP_FLAGS (CMakeLists.txt:
 * -fopenmp-simd, and -march=native with GGML_NATIVE) for the SIMD loops.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llama.h"
#include "select.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

#define ARGMAX_BLOCK 256
#define TOPK_BLOCK 64
#define TOPK_BLOCK_WIDE 256

#define SIMD_LANES 16

/* The largest of x[0..n), n a multiple of SIMD_LANES (-inf when all are -inf or NaN: NaN
 * never wins): SIMD_LANES independent lane maxima first (one AVX-512 vector, two AVX2
 * ones), left in lanes[l] (the largest of x[l], x[l + SIMD_LANES], ...), then across them.
 * One accumulator per lane, not a reduction per element: 2x faster than "#pragma omp simd
 * reduction(max)", whose single accumulator waits on each max's latency (7.8 us against
 * 14.9 for 128k logits in L2 on an EPYC with AVX-512). */
static inline float max_lanes_to(const float * x, int32_t n, float * lanes) {
    float a[SIMD_LANES];
    for (int l = 0; l < SIMD_LANES; l++) {
        a[l] = -INFINITY;
    }
    for (int32_t j = 0; j < n; j += SIMD_LANES) {
#pragma omp simd
        for (int l = 0; l < SIMD_LANES; l++) {
            a[l] = x[j + l] > a[l] ? x[j + l] : a[l];
        }
    }
    float m = -INFINITY;
    for (int l = 0; l < SIMD_LANES; l++) {
        lanes[l] = a[l];
        m = a[l] > m ? a[l] : m;
    }
    return m;
}

static float max_lanes(const float * x, int32_t n) {
    float lanes[SIMD_LANES];
    return max_lanes_to(x, n, lanes);
}

/* The index of the largest of x[0..n) (the first one on ties; NaN never wins; 0 when all
 * are -inf or NaN), as llama.cpp's greedy sampler picks. The first pass takes each block's
 * maximum (max_lanes); then only the winning block is scanned for the index. */
llama_token argmax_f32(const float * x, int32_t n) {
    float best = -INFINITY;
    int32_t best_from = -1;
    int32_t i = 0;
    for (; i + ARGMAX_BLOCK <= n; i += ARGMAX_BLOCK) {
        const float bm = max_lanes(x + i, ARGMAX_BLOCK);
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

static int cand_worse(const llama_token_data * a, const llama_token_data * b) {
    return a->logit < b->logit || (a->logit == b->logit && a->id > b->id);
}

static void cand_sift_down(llama_token_data * h, int32_t size, int32_t i) {
    for (;;) { /* a min-heap by cand_worse: h[0] is the worst candidate kept */
        const int32_t l = 2 * i + 1;
        const int32_t r = l + 1;
        int32_t w = i;
        if (l < size && cand_worse(&h[l], &h[w])) {
            w = l;
        }
        if (r < size && cand_worse(&h[r], &h[w])) {
            w = r;
        }
        if (w == i) {
            return;
        }
        const llama_token_data t = h[i];
        h[i] = h[w];
        h[w] = t;
        i = w;
    }
}

/* offer (id, logit) to the heap h of *size entries, at most k */
static void cand_offer(llama_token_data * h, int32_t * size, int32_t k, llama_token id, float logit) {
    const llama_token_data c = {id, logit, 0.0f};
    if (*size < k) {
        int32_t i = (*size)++;
        while (i > 0 && cand_worse(&c, &h[(i - 1) / 2])) {
            h[i] = h[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        h[i] = c;
    } else if (cand_worse(&h[0], &c)) {
        h[0] = c;
        cand_sift_down(h, k, 0);
    }
}

/* sort h[0..k) best first (cand_worse's order): an insertion sort, k is small (the heap's
 * k candidates), and without qsort's call per comparison */
void cand_sort_desc(llama_token_data * h, int32_t k) {
    for (int32_t i = 1; i < k; i++) {
        const llama_token_data c = h[i];
        int32_t j = i;
        for (; j > 0 && cand_worse(&h[j - 1], &c); j--) {
            h[j] = h[j - 1];
        }
        h[j] = c;
    }
}

/* a float's bits as an unsigned key in the float's order (-inf lowest; no NaN comes here) */
static inline uint32_t float_key(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof(u));
    return u & 0x80000000u ? ~u : u | 0x80000000u;
}

static inline float key_float(uint32_t u) {
    u = u & 0x80000000u ? u & 0x7fffffffu : ~u;
    float f;
    memcpy(&f, &u, sizeof(f));
    return f;
}

/* The k-th largest of v[0..n) (1 <= k <= n, no NaN), as its key: the largest key t with at
 * least k values at or above it, found bit by bit from the top, each step one SIMD count
 * over v (a heap of k over values in random order mispredicts a branch on most inserts:
 * 6 us for 500 values against about 1 us this way). keys: room for n. */
static float kth_largest(const float * v, int32_t n, int32_t k, uint32_t * keys) {
    for (int32_t i = 0; i < n; i++) {
        keys[i] = float_key(v[i]);
    }
    uint32_t t = 0;
    for (int bit = 31; bit >= 0; bit--) {
        const uint32_t cand = t | (1u << bit);
        int32_t count = 0;
#pragma omp simd reduction(+ : count)
        for (int32_t i = 0; i < n; i++) {
            count += keys[i] >= cand;
        }
        if (count >= k) {
            t = cand;
        }
    }
    return key_float(t);
}

/* The positions of the k largest of x[0..n) (0 < k <= n <= TOPK_IDS_MAX, no NaN) into
 * at[0..k), in position order (ties: the first ones). The k-th largest maximum of groups of
 * 8 bounds the answer from below (k groups hold a value at least that large); the few
 * values that reach it are ranked exactly (kth_largest over tens of values, not hundreds). */
void small_top_k(const float * x, int32_t n, int32_t k, int32_t * at) {
    uint32_t keys[TOPK_IDS_MAX];
    float vals[TOPK_IDS_MAX];
    int32_t pos[TOPK_IDS_MAX];
    const int32_t ng = n / 8;
    float reach = -INFINITY;
    if (ng >= k) {
        float gmax[TOPK_IDS_MAX / 8];
        for (int32_t g = 0; g < ng; g++) {
            float m = x[8 * g];
            for (int32_t j = 1; j < 8; j++) {
                m = x[8 * g + j] > m ? x[8 * g + j] : m;
            }
            gmax[g] = m;
        }
        reach = kth_largest(gmax, ng, k, keys);
    }
    int32_t m = 0;
    for (int32_t i = 0; i < n; i++) {
        if (x[i] >= reach) {
            pos[m] = i;
            vals[m++] = x[i];
        }
    }
    const float bound = kth_largest(vals, m, k, keys);
    int32_t size = 0; /* fewer than k are above the bound; ties with it fill up */
    for (int32_t j = 0; j < m; j++) {
        if (vals[j] > bound) {
            at[size++] = pos[j];
        }
    }
    for (int32_t j = 0; j < m && size < k; j++) {
        if (vals[j] == bound) {
            at[size++] = pos[j];
        }
    }
}

/* The block width top_k_select takes for k of n logits: wide blocks (fewer block maxima
 * to rank, fewer horizontal steps) where there are at least 4 k of them, else narrow ones;
 * 0 when even the narrow blocks are fewer than k (the caller then builds every candidate). */
int32_t top_k_block(int32_t n, int32_t k) {
    if (k <= 0) {
        return 0;
    }
    if (n / TOPK_BLOCK_WIDE >= 4 * k) {
        return TOPK_BLOCK_WIDE;
    }
    return n / TOPK_BLOCK >= k ? TOPK_BLOCK : 0;
}

/* offer each of x[from..to) that reaches bound to the heap h of *size entries, at most k */
static void offer_reaching(const float * x, int32_t from, int32_t to, int32_t stride, float bound,
                           llama_token_data * h, int32_t * size, int32_t k) {
    for (int32_t j = from; j < to; j += stride) {
        if (x[j] >= bound) { /* never NaN */
            cand_offer(h, size, k, j, x[j]);
        }
    }
}

/* Top-k candidates straight from the logits, for a chain that starts with top-k: llama.cpp
 * would build a candidate per vocabulary entry (1.5 MB for 128k) and partially sort them
 * (about 0.1 ms a row). Here a first pass takes every block's maximum and its lane maxima
 * (max_lanes_to: lane l of a block is every SIMD_LANES-th logit from the l-th); the k-th
 * largest block maximum bounds the k-th largest logit from below (k blocks hold a logit at
 * least that large), and only the lanes that reach it are scanned into a heap of k (about
 * 1.6x the cost of an argmax on fresh logits). The result is what the top-k sampler leaves: the k largest
 * logits, sorted descending, marked sorted (the chain's top-k then only keeps them); on
 * equal logits the lower token id comes first (llama.cpp's order among equal logits is
 * unspecified). Returns 0 where that does not apply (no block width for k, see
 * top_k_block, or fewer than k logits that are not NaN): the caller then builds every
 * candidate. cur: room for n candidates (as for building them all); the block maxima, lane
 * maxima and kth_largest's keys live in the room after the first k (no allocation per
 * token). */
static int32_t top_k_select(const float * x, int32_t n, int32_t k, llama_token_data * cur) {
    const int32_t width = top_k_block(n, k);
    if (width == 0) {
        return 0;
    }
    const int32_t nb = n / width; /* whole blocks; the tail after them is scanned as it is */
    /* nb * (SIMD_LANES + 2) floats (maxima, lanes, keys) <= n / 64 * 18 < 3 * (n - k): k <= n / 64 */
    float * bmax = (float *) (cur + k);
    float * lanes = bmax + nb;
    for (int32_t b = 0; b < nb; b++) {
        bmax[b] = max_lanes_to(x + (size_t) b * width, width, lanes + (size_t) b * SIMD_LANES);
    }
    /* the k-th largest block maximum: the bound */
    const float bound = kth_largest(bmax, nb, k, (uint32_t *) (lanes + (size_t) nb * SIMD_LANES));
    int32_t size = 0;
    for (int32_t b = 0; b < nb; b++) {
        if (!(bmax[b] >= bound)) {
            continue;
        }
        for (int l = 0; l < SIMD_LANES; l++) {
            if (lanes[(size_t) b * SIMD_LANES + l] >= bound) {
                offer_reaching(x, b * width + l, (b + 1) * width, SIMD_LANES, bound, cur, &size, k);
            }
        }
    }
    offer_reaching(x, nb * width, n, 1, bound, cur, &size, k);
    if (size < k) { /* NaN among the best (the bound was -inf): the whole array, as llama.cpp */
        return 0;
    }
    cand_sort_desc(cur, k);
    return k;
}

/* The host's logits x of n tokens as candidates in cur: with top_k > 0, only the top_k
 * largest, sorted (top_k_select: what the chain's leading top-k would keep, without
 * building and sorting n candidates), where that works; else all of them. Answers the count. */
size_t host_candidates(const float * x, int32_t n, int32_t top_k, llama_token_data * cur) {
    if (top_k > 0 && top_k < n) {
        const int32_t kept = top_k_select(x, n, top_k, cur);
        if (kept > 0) {
            return (size_t) kept;
        }
    }
    for (int32_t i = 0; i < n; i++) {
        cur[i] = (llama_token_data) {i, x[i], 0.0f};
    }
    return (size_t) n;
}

/* top_k_select for any float array (the tests' window on it): the ids of the k largest of
 * x[0..n) into ids[0..k), largest first, lower id first on ties; answers k, or 0 where
 * top_k_select does not apply (no block width for k, fewer than k logits not NaN). */
LLAMA_BINDING_EXPORT int32_t llama_binding_top_k(const float * x, int32_t n, int32_t k, llama_token * ids) {
    if (x == NULL || ids == NULL || n <= 0 || k <= 0 || k >= n) {
        return 0;
    }
    llama_token_data * cur = (llama_token_data *) malloc(sizeof(llama_token_data) * (size_t) n);
    const int32_t kept = cur != NULL ? top_k_select(x, n, k, cur) : 0;
    for (int32_t i = 0; i < kept; i++) {
        ids[i] = cur[i].id;
    }
    free(cur);
    return kept;
}
