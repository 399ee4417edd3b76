/* Checks llama.cpp makes only by stopping the process.
 *
 * Two vocabulary entries with the same text. llama_vocab::load maps each token's text to its id and then asserts
 * (GGML_ASSERT) that there are as many texts as ids, so a GGUF whose
 * tokenizer.ggml.tokens repeats a string kills the interpreter. This finds such a
 * repeat first, reading the texts exactly as llama.cpp does (a C string, so up to the
 * first NUL; an empty text becomes "[EMPTY_<i>]"). In C++ because a Python loop over a
 * 128k vocabulary would add tens of milliseconds to every load.
 *
 * A byte that the tokenizer cannot fall back to. An SPM tokenizer spells text that no
 * token covers byte by byte (llama_vocab::byte_to_token): it looks up "<0xXX>", then the
 * one-byte text, with unordered_map::at, so a vocabulary without such a token for some
 * byte makes llama_tokenize throw std::out_of_range through the C API (std::terminate).
 * An RWKV tokenizer walks a trie of the tokens' unescaped texts: a byte that starts no
 * token gives id -1, and one that starts tokens but is no token itself sends the walk
 * back to where it started, forever.
 */
#include <cstdint>
#include <cstring>
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

namespace {

int hex_digit(char c) {  // llama.cpp writes the byte tokens it looks for in upper case
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* llama_unescape_rwkv_token of llama-vocab.cpp, as it is (hex digits read without checks). */
std::string unescape_rwkv(const char * escaped) {
    std::string output;
    bool escaping = false;
    uint8_t hex_remaining = 0;
    uint8_t hex_acc = 0;
    for (const char * p = escaped; *p; p++) {
        const char c = *p;
        if (hex_remaining != 0) {
            uint8_t value = (c >= 'a') ? (c - 'a' + 10) : (c - '0');
            hex_acc = (uint8_t) ((hex_acc << 4) + value);
            hex_remaining -= 1;
            if (hex_remaining == 0) {
                output.push_back((char) hex_acc);
                hex_acc = 0;
            }
            continue;
        }
        if (escaping) {
            if (c == 't') {
                output.push_back('\t');
            } else if (c == 'n') {
                output.push_back('\n');
            } else if (c == 'r') {
                output.push_back('\r');
            } else if (c == 'x') {
                hex_remaining = 2;
            } else {
                output.push_back(c);
            }
            escaping = false;
            continue;
        }
        if (c == '\\') {
            escaping = true;
            continue;
        }
        output.push_back(c);
    }
    return output;
}

}  // namespace

/* The first byte value (0..255) for which the vocabulary in `key_id` has no token to fall
 * back to, or -1 when every byte has one (or when `key_id` is not an array of strings).
 * `kind` 0: SPM ("<0xXX>" or the one-byte text, read as a C string as llama.cpp does);
 * 1: RWKV (a token whose unescaped text is that single byte). */
extern "C" LLAMA_BINDING_EXPORT int32_t llama_binding_missing_byte_token(const struct gguf_context * ctx,
                                                                         int64_t key_id, int32_t kind) {
    if (key_id < 0 || gguf_get_kv_type(ctx, key_id) != GGUF_TYPE_ARRAY ||
        gguf_get_arr_type(ctx, key_id) != GGUF_TYPE_STRING) {
        return -1;
    }
    bool present[256] = {false};
    const size_t n = gguf_get_arr_n(ctx, key_id);
    for (size_t i = 0; i < n; i++) {
        const char * text = gguf_get_arr_str(ctx, key_id, i);
        if (kind == 1) {
            const std::string bytes = unescape_rwkv(text);
            if (bytes.size() == 1) {
                present[(uint8_t) bytes[0]] = true;
            }
            continue;
        }
        const size_t len = strlen(text);
        if (len == 1) {
            present[(uint8_t) text[0]] = true;
        } else if (len == 6 && text[0] == '<' && text[1] == '0' && text[2] == 'x' && text[5] == '>') {
            const int hi = hex_digit(text[3]);
            const int lo = hex_digit(text[4]);
            if (hi >= 0 && lo >= 0) {
                present[hi * 16 + lo] = true;
            }
        }
    }
    for (int b = 0; b < 256; b++) {
        if (!present[b]) {
            return b;
        }
    }
    return -1;
}
