/* What step.c needs of rows_pool.c: work over rows split between kept threads. */
#ifndef LLAMA_BINDING_ROWS_POOL_H
#define LLAMA_BINDING_ROWS_POOL_H

#include <stdint.h>

#define ROWS_MAX_THREADS 32

typedef void (*rows_fn)(void * arg, int32_t from, int32_t to);

/* fn(arg, from, to) over rows [0, n) split into contiguous shares between n_threads
 * threads (at most ROWS_MAX_THREADS, at most n): this one takes the first share, kept
 * workers the others; returns when every share has run. */
void lb_run_rows(rows_fn fn, void * arg, int32_t n, int32_t n_threads);

#endif
