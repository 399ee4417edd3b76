/* Cheap cancellation for llama_decode.
 *
 * The CPU backend calls the context's abort callback after every graph node
 * (hundreds of times per token). A Python ctypes callback there costs about
 * 0.2 us a call; this C function costs a load. Python owns an int flag (a
 * ctypes c_int) and passes its address as the callback data; setting the flag
 * to non-zero makes the running decode return 2 (aborted).
 */
#include <stdbool.h>

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

LLAMA_BINDING_EXPORT bool llama_binding_abort_flag_cb(void * data) {
    return data != 0 && *(const volatile int *) data != 0;
}
