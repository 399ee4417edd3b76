/* What step.c needs of penalties.c: the window of a penalties sampler made by
 * llama_binding_penalties_new. Internal to the library. */
#ifndef LLAMA_BINDING_PENALTIES_H
#define LLAMA_BINDING_PENALTIES_H

#include <stdint.h>

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_PENALTIES_INTERNAL
#else
#define LLAMA_BINDING_PENALTIES_INTERNAL __attribute__((visibility("hidden")))
#endif

/* The tokens of smpl's window (the last penalty_last_n it accepted, in no order, repeats
 * included) in *ring, and their count; -1 when smpl is not such a sampler. */
LLAMA_BINDING_PENALTIES_INTERNAL int32_t lb_penalties_window(const struct llama_sampler * smpl,
                                                             const llama_token ** ring);

/* A cut code (row_sample's top_k) with this bit: the chain leads with such a penalties
 * sampler, then a top-k of the code's other bits */
#define LB_CUT_PENALTIES 0x40000000

#endif
