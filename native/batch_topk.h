/* What step.c needs of batch_topk.c: the token ids of a row's candidates. */
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

/* The same for the logits at positions at[0..n_at) only (every position in 0..n_logits):
 * into out[0..n_at); n_at, or -1 as above. */
int32_t llama_binding_topk_ids_at(int32_t n_vocab, const llama_token * chunk_ids, int32_t n_chunk_ids, int32_t n_logits,
                                  const int32_t * at, int32_t n_at, llama_token * out);

#endif
