/* What step.c needs of batch_topk.c: a row's candidates and their token ids. */
#ifndef LLAMA_BINDING_BATCH_TOPK_H
#define LLAMA_BINDING_BATCH_TOPK_H

#include <stdint.h>

#include "llama.h"

/* The token id of each of a row's n_logits sampled logits, from its n_chunk_ids sampled
 * "candidates" as batch_topk.c leaves them (the chunk indices of both stages; or, for a plain
 * top-k, the ids themselves: n_chunk_ids == n_logits), into out. n_logits, or -1 where the
 * counts fit neither layout. */
int32_t llama_binding_topk_ids(int32_t n_vocab, const llama_token * chunk_ids, int32_t n_chunk_ids, int32_t n_logits,
                               llama_token * out);

/* A row of batch_topk.c's two stages comes back as one row of n = 10k sampled logits: its 8k
 * candidates' logits, then their 2k chunk indices as floats. The indices into chunk_ids (room
 * for 2k); answers 8k, the logits at the row's start, -1 where n is no such row for a
 * vocabulary of n_vocab (a plain top-k's row: its ids are the sampled candidates), or -2
 * where an index is not a whole number in its stage's range (nothing to sample from). */
int32_t llama_binding_topk_unpack(int32_t n_vocab, const float * row, int32_t n, llama_token * chunk_ids);

/* The same for the logits at positions at[0..n_at) only (every position in 0..n_logits):
 * into out[0..n_at); n_at, or -1 as above. */
int32_t llama_binding_topk_ids_at(int32_t n_vocab, const llama_token * chunk_ids, int32_t n_chunk_ids, int32_t n_logits,
                                  const int32_t * at, int32_t n_at, llama_token * out);

#endif
