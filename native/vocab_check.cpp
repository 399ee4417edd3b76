/* A check llama.cpp makes only by stopping the process: two vocabulary entries with the
 * same text. llama_vocab::load maps each token's text to its id and then asserts
 * (GGML_ASSERT) that there are as many texts as ids, so a GGUF whose
 * tokenizer.ggml.tokens repeats a string kills the interpreter. This finds such a
 * repeat first, reading the texts exactly as llama.cpp does (a C string, so up to the
 * first NUL; an empty text becomes "[EMPTY_<i>]"). In C++ because a Python loop over a
 * 128k vocabulary would add tens of milliseconds to every load.
 */
#include <cstdint>
#include <string>
#include <unordered_set>

#include "gguf.h"

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

/* The index of the first token whose text repeats an earlier token's, or -1 when all
 * differ (or when `key_id` is not an array of strings, which llama.cpp refuses itself). */
extern "C" LLAMA_BINDING_EXPORT int64_t llama_binding_first_repeated_token(const struct gguf_context * ctx,
                                                                           int64_t key_id) {
    if (key_id < 0 || gguf_get_kv_type(ctx, key_id) != GGUF_TYPE_ARRAY ||
        gguf_get_arr_type(ctx, key_id) != GGUF_TYPE_STRING) {
        return -1;
    }
    const size_t n = gguf_get_arr_n(ctx, key_id);
    std::unordered_set<std::string> seen;
    seen.reserve(n);
    for (size_t i = 0; i < n; i++) {
        std::string word = gguf_get_arr_str(ctx, key_id, i);
        if (word.empty()) {
            word = "[EMPTY_" + std::to_string(i) + "]";
        }
        if (!seen.insert(std::move(word)).second) {
            return (int64_t) i;
        }
    }
    return -1;
}
