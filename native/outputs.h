/* The last decode's outputs without a device synchronisation per read (outputs.cpp).
 * llama.cpp's getters (llama_get_logits_ith, llama_get_sampled_*_ith) each synchronise the
 * context first: a driver call of 1-3 us on CUDA even when the device is idle, and the
 * rows functions read up to eight of them per row (64 sampled rows: about 1 ms a step on
 * an H200's host). Here: lb_outputs_sync once, then the reads. Internal to the library. */
#ifndef LLAMA_BINDING_OUTPUTS_H
#define LLAMA_BINDING_OUTPUTS_H

#include <stdint.h>

#include "llama.h"

#if defined(_WIN32)
#define LLAMA_BINDING_OUTPUTS_API
#else
#define LLAMA_BINDING_OUTPUTS_API __attribute__((visibility("hidden")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* llama_synchronize: wait for the last decode */
LLAMA_BINDING_OUTPUTS_API void lb_outputs_sync(struct llama_context * ctx);

/* llama_get_logits_ith, llama_get_sampled_*_ith and their counts, without the
 * synchronisation (call lb_outputs_sync after the decode first); idx as theirs */
LLAMA_BINDING_OUTPUTS_API float * lb_logits(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API llama_token lb_sampled_token(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API float * lb_sampled_probs(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API float * lb_sampled_logits(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API const llama_token * lb_sampled_candidates(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API uint32_t lb_sampled_probs_count(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API uint32_t lb_sampled_logits_count(struct llama_context * ctx, int32_t idx);
LLAMA_BINDING_OUTPUTS_API uint32_t lb_sampled_candidates_count(struct llama_context * ctx, int32_t idx);

#ifdef __cplusplus
}
#endif

#endif
