/* What step.c needs of select.c: picking candidates out of a row of logits (the argmax,
 * the k largest) without building and sorting one per vocabulary entry. Internal to the
 * library: hidden, never exported (only select.c's llama_binding_top_k is). */
#ifndef LLAMA_BINDING_SELECT_H
#define LLAMA_BINDING_SELECT_H

#include <stddef.h>
#include <stdint.h>

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_INTERNAL
#else
#define LLAMA_BINDING_INTERNAL __attribute__((visibility("hidden")))
#endif

#define TOPK_IDS_MAX 512 /* batch_topk.c: 8 logits for each of at most 64 chunks */

/* The index of the largest of x[0..n) (the first one on ties; NaN never wins; 0 when all
 * are -inf or NaN), as llama.cpp's greedy sampler picks. */
LLAMA_BINDING_INTERNAL llama_token argmax_f32(const float * x, int32_t n);

/* sort h[0..k) best first (higher logit, then lower id) */
LLAMA_BINDING_INTERNAL void cand_sort_desc(llama_token_data * h, int32_t k);

/* The positions of the k largest of x[0..n) (0 < k <= n <= TOPK_IDS_MAX, no NaN) into
 * at[0..k), in position order (ties: the first ones). */
LLAMA_BINDING_INTERNAL void small_top_k(const float * x, int32_t n, int32_t k, int32_t * at);

/* The block width the host's top-k selection takes for k of n logits; 0 when it does not
 * apply (every candidate is then built). */
LLAMA_BINDING_INTERNAL int32_t top_k_block(int32_t n, int32_t k);

/* The host's logits x of n tokens as candidates in cur (room for n): with top_k > 0, only
 * the top_k largest, sorted, where that works; else all of them. Answers the count. */
LLAMA_BINDING_INTERNAL size_t host_candidates(const float * x, int32_t n, int32_t top_k, llama_token_data * cur);

#endif
