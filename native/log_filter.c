/* A log callback in front of Python's: lines below a level are dropped here, in C.
 *
 * ggml logs some DEBUG lines on every decode (the CUDA backend says "CUDA Graph id ...
 * reused" once per graph split and token). Each line that reaches the Python callback
 * costs a trip through ctypes and the GIL inside llama_decode, before the GPU is given
 * its work. Python sets the lowest level its logger accepts; lines below it, and their
 * continuation lines (GGML_LOG_LEVEL_CONT), never leave C. Warnings and errors always
 * pass: Python keeps the last ones to say why a call failed.
 */
#include <stddef.h>

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

/* ggml_log_level: NONE 0, DEBUG 1, INFO 2, WARN 3, ERROR 4, CONT 5 */
enum { LEVEL_NONE = 0, LEVEL_INFO = 2, LEVEL_WARN = 3, LEVEL_CONT = 5 };

typedef void (*log_callback)(int level, const char * text, void * user_data);

static log_callback g_forward = NULL;
static volatile int g_min_level = LEVEL_INFO;
static int g_dropping = 0; /* the record being continued was dropped */

LLAMA_BINDING_EXPORT void llama_binding_log_filter(int level, const char * text, void * user_data) {
    if (level == LEVEL_CONT) {
        if (g_dropping) {
            return;
        }
    } else {
        const int effective = level == LEVEL_NONE ? LEVEL_INFO : level;
        const int min_level = g_min_level < LEVEL_WARN ? g_min_level : LEVEL_WARN;
        g_dropping = effective < min_level;
        if (g_dropping) {
            return;
        }
    }
    log_callback forward = g_forward;
    if (forward != NULL) {
        forward(level, text, user_data);
    }
}

LLAMA_BINDING_EXPORT void llama_binding_log_forward(log_callback forward) {
    g_forward = forward;
}

LLAMA_BINDING_EXPORT void llama_binding_log_min_level(int level) {
    g_min_level = level;
}
