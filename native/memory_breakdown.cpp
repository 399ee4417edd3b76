/* What a context's buffers take, by where they live (for n_gpu_layers="auto").
 *
 * llama.cpp tells the sizes of a context's buffers (weights, KV cache, compute) per buffer
 * type only through llama_get_memory_breakdown, a C++ function of its staging header
 * (src/llama-ext.h) that returns a std::map. This flattens it into six numbers a ctypes
 * caller can read: the bytes of the model, the context and the compute buffers on the
 * devices (every non-host buffer type) and on the host. With a model loaded with
 * no_alloc (llama.cpp's own --fit does the same dry run) nothing is allocated: the sizes
 * are what loading for real would allocate.
 */
#include <cstdint>

#include "ggml-backend.h"
#include "llama-ext.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

/* out[0..2]: model, context, compute bytes on the devices; out[3..5]: the same on the
 * host. Returns 0, or -1 when llama.cpp threw (out is then left as it was). */
extern "C" LLAMA_BINDING_EXPORT int32_t llama_binding_memory_breakdown(const struct llama_context * ctx,
                                                                      uint64_t * out) {
    try {
        uint64_t sums[6] = {0, 0, 0, 0, 0, 0};
        for (const auto & entry : llama_get_memory_breakdown(ctx)) {
            const int base = ggml_backend_buft_is_host(entry.first) ? 3 : 0;
            sums[base + 0] += entry.second.model;
            sums[base + 1] += entry.second.context;
            sums[base + 2] += entry.second.compute;
        }
        for (int i = 0; i < 6; i++) {
            out[i] = sums[i];
        }
        return 0;
    } catch (...) {
        return -1;
    }
}
