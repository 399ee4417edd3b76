/* outputs.h: llama.cpp's output getters minus their synchronisation, through the context's
 * own member functions (src/llama-context.h, exported by libllama; the public getters are
 * these after ctx->synchronize()). Each mirrors its public twin in llama-context.cpp. */
#include "outputs.h"

#include "llama-context.h"

extern "C" {

void lb_outputs_sync(llama_context * ctx) {
    ctx->synchronize();
}

float * lb_logits(llama_context * ctx, int32_t idx) {
    float * res = ctx->get_sampled_logits_ith(idx); /* as llama_get_logits_ith */
    return res != nullptr ? res : ctx->get_logits_ith(idx);
}

llama_token lb_sampled_token(llama_context * ctx, int32_t idx) {
    return ctx->get_sampled_token_ith(idx);
}

float * lb_sampled_probs(llama_context * ctx, int32_t idx) {
    return ctx->get_sampled_probs_ith(idx);
}

float * lb_sampled_logits(llama_context * ctx, int32_t idx) {
    return ctx->get_sampled_logits_ith(idx);
}

const llama_token * lb_sampled_candidates(llama_context * ctx, int32_t idx) {
    return ctx->get_sampled_candidates_ith(idx);
}

uint32_t lb_sampled_probs_count(llama_context * ctx, int32_t idx) {
    return static_cast<uint32_t>(ctx->get_sampled_probs_count(idx));
}

uint32_t lb_sampled_logits_count(llama_context * ctx, int32_t idx) {
    return static_cast<uint32_t>(ctx->get_sampled_logits_count(idx));
}

uint32_t lb_sampled_candidates_count(llama_context * ctx, int32_t idx) {
    return static_cast<uint32_t>(ctx->get_sampled_candidates_count(idx));
}

}
