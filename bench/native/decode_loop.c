/* llama-bench's tg loop with timers, callable two ways, to tell a slow Python process from
 * slow Python calls:
 *   - as a program (its own process, like llama-bench):  decode_loop MODEL N_CTX [THREADS]
 *   - as a shared library from Python (ctypes):          lb_probe_loop(ctx, depth, n_gen, out)
 * Built on the GPU machine by bench/gpu_probe.sh; not part of the package. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "ggml-cpu.h"
#include "llama.h"

static double now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* Prefill `depth` tokens, then decode `n_gen` single tokens. out[0..2]: wall, time in
 * llama_process, time in llama_synchronize, each per generated token in us. */
int lb_probe_loop(struct llama_context * ctx, int depth, int n_gen, double * out) {
    const struct llama_vocab * vocab = llama_model_get_vocab(llama_get_model(ctx));
    const int n_vocab = llama_vocab_n_tokens(vocab);
    struct llama_batch_ext * b = llama_batch_ext_init(ctx);
    llama_memory_clear(llama_get_memory(ctx), true);
    int rc = 0;
    for (llama_pos p = 0; p < depth; p++) {
        int idx = llama_batch_ext_add_token(b, 0, p == 0 ? llama_vocab_bos(vocab) : (p * 7919) % (n_vocab - 100) + 50);
        llama_batch_ext_set_pos(b, idx, &p);
        llama_batch_ext_set_output_logits(b, idx, p == depth - 1);
    }
    if ((rc = llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, b)) != 0) goto done;
    llama_synchronize(ctx);
    double t_call = 0, t_sync = 0, t0 = now_us();
    llama_token tok = 50;
    for (int i = 0; i < n_gen; i++) {
        llama_pos p = depth + i;
        llama_batch_ext_clear(b);
        int idx = llama_batch_ext_add_token(b, 0, tok);
        llama_batch_ext_set_pos(b, idx, &p);
        llama_batch_ext_set_output_logits(b, idx, true);
        double a = now_us();
        rc = llama_process(ctx, LLAMA_PROCESS_TYPE_DECODE, b);
        double c = now_us();
        llama_synchronize(ctx);
        t_call += c - a;
        t_sync += now_us() - c;
        if (rc != 0) goto done;
        tok = (tok * 31 + 7) % (n_vocab - 100) + 50;
    }
    out[0] = (now_us() - t0) / n_gen;
    out[1] = t_call / n_gen;
    out[2] = t_sync / n_gen;
done:
    llama_batch_ext_free(b);
    return rc;
}

static void quiet(enum ggml_log_level level, const char * text, void * ud) { (void) level; (void) text; (void) ud; }

int main(int argc, char ** argv) {
    if (argc < 3) { fprintf(stderr, "usage: %s MODEL N_CTX [THREADS]\n", argv[0]); return 2; }
    int threads = argc > 3 ? atoi(argv[3]) : 16;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 99;
    struct llama_model * model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "load failed\n"); return 1; }
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = atoi(argv[2]);
    cp.n_batch = 2048;
    cp.n_ubatch = 512;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_ENABLED;
    cp.n_threads = cp.n_threads_batch = threads;
    struct llama_context * ctx = llama_init_from_model(model, cp);
    struct ggml_threadpool_params tpp = ggml_threadpool_params_default(threads);
    struct ggml_threadpool * tp = ggml_threadpool_new(&tpp);
    llama_attach_threadpool(ctx, tp, NULL);
    double out[3];
    lb_probe_loop(ctx, 512, 8, out);
    for (int r = 0; r < 3; r++) {
        if (lb_probe_loop(ctx, 512, 128, out) != 0) { fprintf(stderr, "decode failed\n"); return 1; }
        printf("C process n_ctx %d t%d: wall %8.1f us  call %7.1f  sync %7.1f\n", cp.n_ctx, threads, out[0], out[1], out[2]);
    }
    llama_free(ctx);
    ggml_threadpool_free(tp);
    llama_model_free(model);
    return 0;
}
