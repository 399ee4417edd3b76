/* What step.c needs of top_p.c: llama.cpp's top-p over a whole row of the host's logits,
 * without sorting every candidate unless the result needs it. Internal to the library. */
#ifndef LLAMA_BINDING_TOP_P_H
#define LLAMA_BINDING_TOP_P_H

#include <stdint.h>

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_TOP_P_INTERNAL
#else
#define LLAMA_BINDING_TOP_P_INTERNAL __attribute__((visibility("hidden")))
#endif

/* What llama.cpp's top-p sampler (min_keep 0 or 1) keeps of the n logits x, in cur (room
 * for 3 n): the candidates sorted by logit descending (lower id first on equal logits),
 * their p as its softmax over all n computes them; answers their count, or 0 where this
 * does not apply (n <= 1024, p not in (0, 1), a NaN logit, no finite logit): the caller
 * then runs llama.cpp's own. */
LLAMA_BINDING_TOP_P_INTERNAL int32_t host_top_p(const float * x, int32_t n, float p, llama_token_data * cur);

#endif
