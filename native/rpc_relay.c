/* A relay between ggml-rpc and an RPC worker: a worker that dies or stops answering becomes
 * an error for Python instead of the end of the process.
 *
 * ggml-rpc stops the whole process (GGML_ABORT in its connection thread) when the connection
 * to a worker fails; nothing can catch that. So the client connects to a relay on 127.0.0.1
 * instead, which forwards each command to the worker and the worker's answer back. Once the
 * worker's side fails (closed, reset, or no answer within the timeout) the relay counts a
 * failure and answers that command, and every later one of the connection, itself, with an
 * answer of the size the client expects (zeros; an allocation that fails): ggml-rpc goes on
 * without aborting, and Python, which reads the failure count after each decode, raises
 * RpcError and does not use that model again.
 *
 * Which commands have an answer, and of what size, is ggml-rpc's protocol 7.x (the enum and
 * the rpc_msg_* structs of ggml-rpc.cpp); tests/test_rpc_relay.py checks this table against
 * the pinned source. The relay never lets the peers upgrade the transport (RDMA): it zeroes
 * the capabilities both ways in the handshake.
 */
#if !defined(_WIN32)
#define _GNU_SOURCE

#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "ggml-rpc.h"

#define LLAMA_BINDING_EXPORT __attribute__((visibility("default")))

#if RPC_PROTO_MAJOR_VERSION != 7
#error "rpc_relay.c knows ggml-rpc's protocol 7.x: check its command table against ggml-rpc.cpp"
#endif

enum {
    CMD_ALLOC_BUFFER = 0, CMD_GET_ALIGNMENT, CMD_GET_MAX_SIZE, CMD_BUFFER_GET_BASE, CMD_FREE_BUFFER,
    CMD_BUFFER_CLEAR, CMD_SET_TENSOR, CMD_SET_TENSOR_HASH, CMD_GET_TENSOR, CMD_COPY_TENSOR,
    CMD_GRAPH_COMPUTE, CMD_GET_DEVICE_MEMORY, CMD_INIT_TENSOR, CMD_GET_ALLOC_SIZE, CMD_HELLO,
    CMD_DEVICE_COUNT, CMD_GRAPH_RECOMPUTE, CMD_MEMSET_TENSOR, CMD_COUNT
};

#define NO_ANSWER (-1)
#define CAPS_SIZE 24          /* RPC_CONN_CAPS_SIZE */
#define TENSOR_SIZE 296       /* sizeof(rpc_tensor) */
#define KEEP 4096             /* requests up to this size are kept to size the answer */
#define CHUNK (1 << 20)

/* the size of the worker's answer to `cmd` (NO_ANSWER: none), `req` its request if kept */
static int64_t answer_size(uint8_t cmd, const uint8_t * req, uint64_t size, int kept) {
    switch (cmd) {
        case CMD_ALLOC_BUFFER: case CMD_GET_DEVICE_MEMORY: return 16;
        case CMD_GET_ALIGNMENT: case CMD_GET_MAX_SIZE: case CMD_BUFFER_GET_BASE:
        case CMD_GET_ALLOC_SIZE: return 8;
        case CMD_SET_TENSOR_HASH: case CMD_COPY_TENSOR: return 1;
        case CMD_HELLO: return 4 + CAPS_SIZE;
        case CMD_DEVICE_COUNT: return 4;
        case CMD_GET_TENSOR: {  /* rpc_tensor, offset, size: as many bytes as asked for */
            uint64_t n = 0;
            if (kept && size == TENSOR_SIZE + 16) {
                memcpy(&n, req + TENSOR_SIZE + 8, 8);
            }
            return (int64_t) n;
        }
        default: return NO_ANSWER;
    }
}

/* What the relay answers for a lost worker: zeros (no buffer, no memory, "not copied"),
 * except values that must not be zero for the client's arithmetic. */
static void made_up_answer(uint8_t cmd, const uint8_t * req, int kept, uint8_t * out, int64_t n) {
    memset(out, 0, (size_t) n);
    uint64_t v = 0;
    if (cmd == CMD_GET_ALIGNMENT) {
        v = 64;
    } else if (cmd == CMD_GET_MAX_SIZE) {
        v = UINT64_MAX / 2;
    } else if (cmd == CMD_GET_ALLOC_SIZE && kept) {
        /* device (4), then the tensor: ne[4] at 28, nb[4] at 44 (an upper bound of its bytes) */
        for (int i = 0; i < 4; i++) {
            uint32_t ne, nb;
            memcpy(&ne, req + 4 + 28 + 4 * i, 4);
            memcpy(&nb, req + 4 + 44 + 4 * i, 4);
            if ((uint64_t) ne * nb > v) {
                v = (uint64_t) ne * nb;
            }
        }
    } else if (cmd == CMD_HELLO) {  /* the protocol version this build speaks */
        out[0] = RPC_PROTO_MAJOR_VERSION;
    }
    if (v && n >= 8) {
        memcpy(out, &v, 8);
    }
}

struct relay {
    int listen_fd;
    int port;
    char host[256];
    char service[16];
    int timeout_ms;
    volatile int failures; /* read by Python from its address */
    volatile int live;     /* connections open now */
    pthread_mutex_t mu;
    char error[512];
};

struct conn {
    struct relay * r;
    int c;  /* ggml-rpc's side */
    int w;  /* the worker's side; -1 once lost */
    int gone;
    uint8_t * buf;
};

static void set_nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static void lost(struct conn * k, const char * what) {
    struct relay * r = k->r;
    if (k->gone) {
        return;
    }
    k->gone = 1;
    pthread_mutex_lock(&r->mu);
    snprintf(r->error, sizeof(r->error), "%s", what);
    __atomic_add_fetch(&r->failures, 1, __ATOMIC_SEQ_CST);
    pthread_mutex_unlock(&r->mu);
    if (k->w >= 0) {
        close(k->w);
    }
    k->w = -1;
}

/* wait until `fd` is ready for `events`; 0: timed out or failed */
static int ready(int fd, short events, int timeout_ms) {
    struct pollfd p = { fd, events, 0 };
    for (;;) {
        int n = poll(&p, 1, timeout_ms);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        return n > 0 && (p.revents & (events | POLLHUP | POLLERR));
    }
}

/* the client's side blocks (an idle client is normal); the worker's side has a deadline */
static int recv_all(int fd, void * data, size_t n, int timeout_ms) {
    uint8_t * p = (uint8_t *) data;
    while (n) {
        if (timeout_ms >= 0 && !ready(fd, POLLIN, timeout_ms)) {
            return 0;
        }
        ssize_t got = recv(fd, p, n, 0);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            return 0;
        }
        p += got;
        n -= (size_t) got;
    }
    return 1;
}

static int send_all(int fd, const void * data, size_t n, int timeout_ms) {
    const uint8_t * p = (const uint8_t *) data;
    while (n) {
        if (timeout_ms >= 0 && !ready(fd, POLLOUT, timeout_ms)) {
            return 0;
        }
        ssize_t put = send(fd, p, n, MSG_NOSIGNAL);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put <= 0) {
            return 0;
        }
        p += put;
        n -= (size_t) put;
    }
    return 1;
}

/* Forward one request from the client to the worker (if still there). 0: the client left. */
static int forward_request(struct conn * k, uint8_t cmd, uint64_t size, uint8_t * kept) {
    int t = k->r->timeout_ms;
    uint8_t hdr[9];
    hdr[0] = cmd;
    memcpy(hdr + 1, &size, 8);
    if (k->w >= 0 && !send_all(k->w, hdr, 9, t)) {
        lost(k, "the connection to the worker failed");
    }
    for (uint64_t done = 0; done < size;) {
        size_t n = (size_t) (size - done < CHUNK ? size - done : CHUNK);
        if (!recv_all(k->c, k->buf, n, -1)) {
            return 0;
        }
        if (size <= KEEP) {
            memcpy(kept + done, k->buf, n);
        }
        if (cmd == CMD_HELLO && done == 0 && n >= CAPS_SIZE) {
            memset(k->buf, 0, CAPS_SIZE);  /* no transport upgrade behind the relay's back */
        }
        if (k->w >= 0 && !send_all(k->w, k->buf, n, t)) {
            lost(k, "the connection to the worker failed");
        }
        done += n;
    }
    return 1;
}

/* Bring the worker's answer of `want` bytes to the client, or make one up. 0: the client left. */
static int forward_answer(struct conn * k, uint8_t cmd, const uint8_t * kept, int is_kept, int64_t want) {
    int t = k->r->timeout_ms;
    uint64_t size = 0;
    if (k->w >= 0) {
        if (!recv_all(k->w, &size, 8, t)) {
            lost(k, t > 0 ? "the worker closed the connection or did not answer in time"
                          : "the worker closed the connection");
        } else if (size != (uint64_t) want) {
            lost(k, "the worker answered with an unexpected size (another protocol version?)");
        }
    }
    if (!send_all(k->c, &want, 8, -1)) {
        return 0;
    }
    uint64_t done = 0;
    while (k->w >= 0 && done < (uint64_t) want) {
        size_t n = (size_t) ((uint64_t) want - done < CHUNK ? (uint64_t) want - done : CHUNK);
        if (!recv_all(k->w, k->buf, n, t)) {
            lost(k, "the worker closed the connection or did not answer in time");
            break;
        }
        if (cmd == CMD_HELLO && n >= 4 + CAPS_SIZE) {
            memset(k->buf + 4, 0, CAPS_SIZE);
        }
        if (!send_all(k->c, k->buf, n, -1)) {
            return 0;
        }
        done += n;
    }
    while (done < (uint64_t) want) {  /* the worker is gone: the rest of the answer made up */
        size_t n = (size_t) ((uint64_t) want - done < CHUNK ? (uint64_t) want - done : CHUNK);
        if (done == 0) {
            made_up_answer(cmd, kept, is_kept, k->buf, (int64_t) n);
        } else {
            memset(k->buf, 0, n);
        }
        if (!send_all(k->c, k->buf, n, -1)) {
            return 0;
        }
        done += n;
    }
    return 1;
}

static int connect_worker(struct relay * r) {
    struct addrinfo hints, * res = NULL;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    if (getaddrinfo(r->host, r->service, &hints, &res) != 0) {
        return -1;
    }
    int fd = -1;
    for (struct addrinfo * a = res; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd >= 0 && connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0) {
        set_nodelay(fd);
    }
    return fd;
}

static void * serve_conn(void * arg) {
    struct conn * k = (struct conn *) arg;
    uint8_t * kept = (uint8_t *) malloc(KEEP);
    for (;;) {
        uint8_t hdr[9];
        uint64_t size;
        if (!kept || !recv_all(k->c, hdr, 9, -1)) {
            break;
        }
        memcpy(&size, hdr + 1, 8);
        if (hdr[0] >= CMD_COUNT) {  /* not ggml-rpc 3.x: nothing sensible to answer */
            lost(k, "the client sent a command this relay does not know");
            break;
        }
        if (!forward_request(k, hdr[0], size, kept)) {
            break;
        }
        int is_kept = size <= KEEP;
        int64_t want = answer_size(hdr[0], kept, size, is_kept);
        if (want != NO_ANSWER && !forward_answer(k, hdr[0], kept, is_kept, want)) {
            break;
        }
    }
    close(k->c);
    if (k->w >= 0) {
        close(k->w);
    }
    __atomic_sub_fetch(&k->r->live, 1, __ATOMIC_SEQ_CST);
    free(kept);
    free(k->buf);
    free(k);
    return NULL;
}

static void * accept_loop(void * arg) {
    struct relay * r = (struct relay *) arg;
    for (;;) {
        int c = accept(r->listen_fd, NULL, NULL);
        if (c < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            break;
        }
        set_nodelay(c);
        struct conn * k = (struct conn *) calloc(1, sizeof(*k));
        if (k) {
            k->buf = (uint8_t *) malloc(CHUNK);
        }
        if (!k || !k->buf) {
            free(k);
            close(c);
            continue;
        }
        k->r = r;
        k->c = c;
        k->w = connect_worker(r);
        if (k->w < 0) {
            lost(k, "the worker could not be reached");
        }
        __atomic_add_fetch(&r->live, 1, __ATOMIC_SEQ_CST);
        pthread_t th;
        pthread_attr_t attr;
        pthread_attr_init(&attr);
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        if (pthread_create(&th, &attr, serve_conn, k) != 0) {
            __atomic_sub_fetch(&r->live, 1, __ATOMIC_SEQ_CST);
            close(c);
            if (k->w >= 0) {
                close(k->w);
            }
            free(k->buf);
            free(k);
        }
        pthread_attr_destroy(&attr);
    }
    return NULL;
}

/* Start a relay to the worker at host:port; its loopback port in *port. NULL on failure.
 * timeout_ms: how long the worker may take to answer (<= 0: no limit). A relay lives as
 * long as the process. */
LLAMA_BINDING_EXPORT void * llama_binding_relay_start(const char * host, int port, int timeout_ms,
                                                       int * out_port) {
    struct relay * r = (struct relay *) calloc(1, sizeof(*r));
    if (!r || strlen(host) >= sizeof(r->host)) {
        free(r);
        return NULL;
    }
    snprintf(r->host, sizeof(r->host), "%s", host);
    snprintf(r->service, sizeof(r->service), "%d", port);
    r->timeout_ms = timeout_ms > 0 ? timeout_ms : -1;
    pthread_mutex_init(&r->mu, NULL);
    struct sockaddr_in a;
    memset(&a, 0, sizeof(a));
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t len = sizeof(a);
    r->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    if (r->listen_fd < 0 || bind(r->listen_fd, (struct sockaddr *) &a, sizeof(a)) != 0 ||
        listen(r->listen_fd, 8) != 0 || getsockname(r->listen_fd, (struct sockaddr *) &a, &len) != 0) {
        if (r->listen_fd >= 0) {
            close(r->listen_fd);
        }
        free(r);
        return NULL;
    }
    r->port = ntohs(a.sin_port);
    pthread_t th;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    /* the relay's threads never take a signal meant for the process's own threads */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int rc = pthread_create(&th, &attr, accept_loop, r);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    if (rc != 0) {
        close(r->listen_fd);
        free(r);
        return NULL;
    }
    *out_port = r->port;
    return r;
}

/* the address of the relay's failure count (connections whose worker was lost) */
LLAMA_BINDING_EXPORT volatile int * llama_binding_relay_failures(void * h) {
    return &((struct relay *) h)->failures;
}

/* connections open through the relay now */
LLAMA_BINDING_EXPORT int llama_binding_relay_live(void * h) {
    return __atomic_load_n(&((struct relay *) h)->live, __ATOMIC_SEQ_CST);
}

/* why the last connection was lost, into buf (NUL-terminated) */
LLAMA_BINDING_EXPORT void llama_binding_relay_error(void * h, char * buf, int n) {
    struct relay * r = (struct relay *) h;
    pthread_mutex_lock(&r->mu);
    snprintf(buf, (size_t) n, "%s", r->error);
    pthread_mutex_unlock(&r->mu);
}

#endif
