/* Cheap cancellation for llama_decode, and Ctrl-C that reaches a running decode.
 *
 * The CPU backend calls the context's abort callback after every graph node
 * (hundreds of times per token). A Python ctypes callback there costs about
 * 0.2 us a call; this C function costs two loads.
 *
 * Python owns a `struct llama_binding_abort` per context and passes its
 * address as the callback data:
 *   - setting `cancel` to non-zero makes the running decode return 2 (aborted);
 *   - `interrupts_seen` is set to llama_binding_interrupts() before each decode,
 *     so a SIGINT that arrives during the decode aborts it too.
 *
 * llama_binding_install_sigint() puts a SIGINT handler in front of the one in
 * place (Python's): it counts the signal and then calls the previous handler,
 * so Python still raises KeyboardInterrupt once the aborted decode returns.
 */
#include <signal.h>
#include <stdbool.h>
#include <string.h>

#if defined(_WIN32)
#define LLAMA_BINDING_EXPORT __declspec(dllexport)
#else
#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))
#endif

struct llama_binding_abort {
    int cancel;
    int interrupts_seen;
};

static volatile sig_atomic_t g_interrupts = 0;

LLAMA_BINDING_EXPORT int llama_binding_interrupts(void) {
    return (int) g_interrupts;
}

LLAMA_BINDING_EXPORT bool llama_binding_abort_flag_cb(void * data) {
    const volatile struct llama_binding_abort * s = (const volatile struct llama_binding_abort *) data;
    return s != 0 && (s->cancel != 0 || s->interrupts_seen != (int) g_interrupts);
}

#if defined(_WIN32)
LLAMA_BINDING_EXPORT int llama_binding_install_sigint(void) {
    return 0; /* not available: a cancel from another thread still works */
}
#else
static struct sigaction g_prev;
static volatile sig_atomic_t g_installed = 0;

static void on_sigint(int sig, siginfo_t * info, void * uctx) {
    g_interrupts = g_interrupts + 1;
    if (g_prev.sa_flags & SA_SIGINFO) {
        if (g_prev.sa_sigaction) {
            g_prev.sa_sigaction(sig, info, uctx);
        }
    } else if (g_prev.sa_handler != SIG_DFL && g_prev.sa_handler != SIG_IGN && g_prev.sa_handler != 0) {
        g_prev.sa_handler(sig);
    } else if (g_prev.sa_handler == SIG_DFL) {
        /* nobody else handles SIGINT: behave as the default would */
        sigaction(SIGINT, &g_prev, 0);
        raise(SIGINT);
    }
}

/* Returns 1 when our handler is (now) in place, 0 when SIGINT is ignored (left alone). */
LLAMA_BINDING_EXPORT int llama_binding_install_sigint(void) {
    struct sigaction current;
    if (sigaction(SIGINT, 0, &current) != 0) {
        return 0;
    }
    if ((current.sa_flags & SA_SIGINFO) && current.sa_sigaction == on_sigint) {
        return 1;
    }
    if (!(current.sa_flags & SA_SIGINFO) && current.sa_handler == SIG_IGN) {
        return 0;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_sigint;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    g_prev = current;
    if (sigaction(SIGINT, &sa, 0) != 0) {
        return 0;
    }
    g_installed = 1;
    return 1;
}
#endif
