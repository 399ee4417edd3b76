/* The host's sampling steps of native/select.c on 128,256 random logits (the Llama-3
 * vocabulary), each timed alone: the argmax, the leading top-k's selection, and the whole
 * chain t0.8 / top-k 40 / top-p 0.95 over them, on the same logits every call and on fresh
 * ones (new values each call, as a decode brings: the branches no longer repeat). Built and
 * run by bench/gpu_p16.sh (PARTS=micro) against the build's libraries; not part of the
 * package. */
#include "../../native/select.c"

#include <stdio.h>
#include <time.h>

static double now_us(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static unsigned seed = 1;

static void fill(float * x, int n) { /* roughly normal: a sum of six uniforms */
    for (int i = 0; i < n; i++) {
        float u = 0;
        for (int j = 0; j < 6; j++) {
            seed = seed * 1103515245u + 12345u;
            u += (seed >> 8) / 16777216.0f;
        }
        x[i] = (u - 3) * 2;
    }
}

int main(void) {
    const int n = 128256;
    const int reps = 5000;
    float * x = malloc(sizeof(float) * n);
    llama_token_data * cur = malloc(sizeof(*cur) * n);
    fill(x, n);
    struct llama_sampler * ch = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(ch, llama_sampler_init_top_k(40));
    llama_sampler_chain_add(ch, llama_sampler_init_top_p(0.95f, 1));
    llama_sampler_chain_add(ch, llama_sampler_init_temp(0.8f));
    llama_sampler_chain_add(ch, llama_sampler_init_dist(1));
    volatile long sink = 0;
    double t0 = now_us();
    for (int r = 0; r < reps; r++) {
        sink += argmax_f32(x, n);
    }
    printf("argmax_f32              %7.2f us\n", (now_us() - t0) / reps);
    t0 = now_us();
    for (int r = 0; r < reps; r++) {
        sink += top_k_select(x, n, 40, cur);
    }
    printf("top_k_select k=40       %7.2f us\n", (now_us() - t0) / reps);
    t0 = now_us();
    for (int r = 0; r < reps; r++) {
        const size_t k = host_candidates(x, n, 40, cur);
        llama_token_data_array a = {cur, k, -1, true};
        llama_sampler_apply(ch, &a);
        sink += a.selected;
    }
    printf("top-k + chain           %7.2f us\n", (now_us() - t0) / reps);
    double ta = 0, tk = 0; /* fresh logits: timed calls only, the refill outside */
    for (int r = 0; r < 300; r++) {
        fill(x, n);
        t0 = now_us();
        sink += argmax_f32(x, n);
        ta += now_us() - t0;
        fill(x, n);
        t0 = now_us();
        sink += top_k_select(x, n, 40, cur);
        tk += now_us() - t0;
    }
    printf("fresh logits: argmax    %7.2f us, top_k_select k=40 %7.2f us\n", ta / 300, tk / 300);
    llama_sampler_free(ch);
    free(cur);
    free(x);
    return (int) (sink & 0);
}
