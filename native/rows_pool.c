/* rows_pool.h: work over rows split between threads that are started once and then kept.
 *
 * The batching engine samples its rows (step.c: 64 sampled rows are 64 chains over 512
 * candidates each) on the host's threads every step. A thread started for each share of
 * each step cost 40-70 us on an H100's host (bench/results/p16/gpu-12/: a third and fourth
 * thread made the step's collect slower, not faster), about what a share's work takes, so
 * the workers here wait on a condition variable between steps instead: a step wakes them
 * (one broadcast), each runs its share, the caller runs the first and waits for the rest.
 *
 * One job at a time: a call that finds the pool busy (another context's engine on another
 * thread) starts its own threads, as before. After fork() the child has none of the
 * workers; the pool starts afresh there. Where threads cannot be started at all, the
 * shares run on the caller's thread.
 */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* pthread_sigmask, sigfillset */
#endif
#include "rows_pool.h"

#if !defined(_WIN32)
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#endif

struct rows_share {
    rows_fn fn;
    void * arg;
    int32_t from;
    int32_t to;
};

static void share_run(const struct rows_share * s) {
    s->fn(s->arg, s->from, s->to);
}

/* shares[0..n_threads): n rows split into contiguous, nearly equal shares */
static void split(struct rows_share * shares, rows_fn fn, void * arg, int32_t n, int32_t n_threads) {
    int32_t from = 0;
    for (int32_t t = 0; t < n_threads; t++) {
        const int32_t count = n / n_threads + (t < n % n_threads ? 1 : 0);
        shares[t] = (struct rows_share) {fn, arg, from, from + count};
        from += count;
    }
}

#if !defined(_WIN32)
static void * share_thread(void * p) {
    share_run((const struct rows_share *) p);
    return NULL;
}

/* a thread per share, joined at the end (a share whose thread cannot start runs here) */
static void run_started(const struct rows_share * shares, int32_t n_threads) {
    pthread_t threads[ROWS_MAX_THREADS];
    int started[ROWS_MAX_THREADS] = {0};
    for (int32_t t = 1; t < n_threads; t++) {
        started[t] = pthread_create(&threads[t], NULL, share_thread, (void *) &shares[t]) == 0;
    }
    share_run(&shares[0]);
    for (int32_t t = 1; t < n_threads; t++) {
        if (started[t]) {
            pthread_join(threads[t], NULL);
        } else {
            share_run(&shares[t]);
        }
    }
}

static struct {
    pthread_mutex_t busy; /* held by the call whose job the pool runs */
    pthread_mutex_t lock; /* guards the fields below */
    pthread_cond_t go;
    pthread_cond_t done;
    int32_t workers;   /* started; worker w (1-based) runs share w */
    uint64_t job;      /* bumped for each job */
    const struct rows_share * shares;
    int32_t n_shares;
    int32_t pending;   /* workers' shares of this job not finished yet */
    uint64_t born[ROWS_MAX_THREADS]; /* the job before worker w's first (it may first run
                                        after that job was posted: it must not miss it) */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER,
          PTHREAD_COND_INITIALIZER, 0, 0, NULL, 0, 0, {0}};

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;

static void pool_after_fork(void) { /* the child: one thread, none of the workers */
    pthread_mutex_init(&pool.busy, NULL);
    pthread_mutex_init(&pool.lock, NULL);
    pthread_cond_init(&pool.go, NULL);
    pthread_cond_init(&pool.done, NULL);
    pool.workers = 0;
    pool.job = 0;
    pool.shares = NULL;
    pool.n_shares = 0;
    pool.pending = 0;
}

static void pool_init(void) {
    (void) pthread_atfork(NULL, NULL, pool_after_fork);
}

static void * worker(void * p) {
    const int32_t w = (int32_t) (intptr_t) p;
    pthread_mutex_lock(&pool.lock);
    uint64_t seen = pool.born[w];
    for (;;) {
        while (pool.job == seen) {
            pthread_cond_wait(&pool.go, &pool.lock);
        }
        seen = pool.job;
        if (w < pool.n_shares) {
            const struct rows_share share = pool.shares[w];
            pthread_mutex_unlock(&pool.lock);
            share_run(&share);
            pthread_mutex_lock(&pool.lock);
            if (--pool.pending == 0) {
                pthread_cond_signal(&pool.done);
            }
        }
    }
    return NULL;
}

/* the pool's workers run shares 1.., this thread share 0; 0 where the pool was busy or
 * could not start enough workers (nothing has run then) */
static int run_pooled(const struct rows_share * shares, int32_t n_threads) {
    pthread_once(&pool_once, pool_init);
    if (pthread_mutex_trylock(&pool.busy) != 0) {
        return 0;
    }
    pthread_mutex_lock(&pool.lock);
    sigset_t all, mask;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &mask); /* the workers block every signal: they stay */
    while (pool.workers < n_threads - 1) {     /* (Ctrl-C and the like go to other threads) */
        pthread_t t;
        pool.born[pool.workers + 1] = pool.job;
        if (pthread_create(&t, NULL, worker, (void *) (intptr_t) (pool.workers + 1)) != 0) {
            break;
        }
        pthread_detach(t);
        pool.workers++;
    }
    pthread_sigmask(SIG_SETMASK, &mask, NULL);
    if (pool.workers < n_threads - 1) {
        pthread_mutex_unlock(&pool.lock);
        pthread_mutex_unlock(&pool.busy);
        return 0;
    }
    pool.shares = shares;
    pool.n_shares = n_threads;
    pool.pending = n_threads - 1;
    pool.job++;
    pthread_cond_broadcast(&pool.go);
    pthread_mutex_unlock(&pool.lock);
    share_run(&shares[0]);
    pthread_mutex_lock(&pool.lock);
    while (pool.pending > 0) {
        pthread_cond_wait(&pool.done, &pool.lock);
    }
    pool.shares = NULL;
    pool.n_shares = 0;
    pthread_mutex_unlock(&pool.lock);
    pthread_mutex_unlock(&pool.busy);
    return 1;
}
#endif

void lb_run_rows(rows_fn fn, void * arg, int32_t n, int32_t n_threads) {
    n_threads = n_threads > n ? n : n_threads;
    n_threads = n_threads > ROWS_MAX_THREADS ? ROWS_MAX_THREADS : n_threads;
    n_threads = n_threads < 1 ? 1 : n_threads;
    struct rows_share shares[ROWS_MAX_THREADS];
    split(shares, fn, arg, n, n_threads);
    if (n_threads == 1) {
        share_run(&shares[0]);
        return;
    }
#if !defined(_WIN32)
    if (!run_pooled(shares, n_threads)) {
        run_started(shares, n_threads);
    }
#else
    for (int32_t t = 0; t < n_threads; t++) {
        share_run(&shares[t]);
    }
#endif
}
