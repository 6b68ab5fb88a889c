/* An open-loop HTTP/1.1 load generator in C (epoll, one thread): the same schedule and
 * the same counts as bench/open_loop.py, at rates Python cannot reach on one core.
 *
 * Request i is due at start + i / rate. It goes out on an idle keep-alive connection, on a
 * new one when none is idle (up to --max-connections), or waits in a FIFO backlog until
 * one frees up; it never waits for an earlier answer. Latency runs from the time the
 * request was due, not from when it was sent, so a server (or generator) falling behind is
 * charged for the wait (no coordinated omission). One request in --create-every is a
 * CreateImageServer, the rest ListImageJobs. Answers are counted by operation, status and
 * error code. Prints one JSON object on stdout, the same keys as open_loop.py.
 *
 *   cc -O2 -o open_loop bench/open_loop.c
 *   ./open_loop --port P --token T --rate 16000 --duration 60 [--index 0]
 *       [--max-connections 1024] [--create-every 10] [--host 127.0.0.1]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PROJECT "a4da8115c9d8464ead3a38309130523f"
#define LIST_PATH "/v1/" PROJECT "/image-server-jobs?job_type=CREATE_SERVER&status=SUCCESS&limit=10"
#define CREATE_PATH "/v1/" PROJECT "/image-servers"
#define CREATE_BODY                                                                        \
    "{\"name\": \"load-%d-%ld\", \"root_volume\": {\"type\": \"SAS\", \"size\": 80},"       \
    " \"image_ref\": {\"id\": \"da02e5ca-c6ec-4685-8ecb-f116bb5bdd2c\", \"image_type\": "   \
    "\"public\"}, \"vpc_id\": \"59785ba5-e5d5-4836-b9de-19f22ac15175\","                    \
    " \"subnet_id\": \"a5842cb4-5718-4b0a-8b27-3a3e9c74f977\","                             \
    " \"product_id\": \"workspace.x86.performance.xlarge4\","                               \
    " \"authorize_accounts\": [{\"account\": \"administrator\", \"account_type\": \"USER\"}]}"
#define DRAIN_S 10.0   /* how long answers to the last requests are awaited */
#define LATE_S 0.010   /* a request sent later than this after its due time is late */
#define BUFSIZE 16384
#define MAX_KEYS 256

enum kind { LIST = 0, CREATE = 1 };
static const char *KIND_NAMES[] = {"list", "create"};

struct conn {
    int fd;
    int connected;
    int waiting;      /* a request is out on it */
    enum kind kind;
    double due;
    char *out;        /* bytes still to write */
    size_t out_len;
    char *owned;      /* the malloc'd request out points into, if any */
    char buf[BUFSIZE];
    size_t len;
    struct conn *next_idle;
};

struct pending {
    enum kind kind;
    long i;
    double due;
};

struct key_count {
    char key[96];
    long n;
};

struct samples {
    double *v;
    size_t n, cap;
};

static struct {
    const char *host;
    int port;
    const char *token;
    double rate, duration;
    int create_every, index, max_connections;
} args = {"127.0.0.1", 0, NULL, 0, 0, 10, 0, 1024};

static int epfd;
static struct sockaddr_in address;
static struct conn *idle_list;
static int open_connections;
static long outstanding, socket_errors, late_sends;
static struct pending *backlog;
static size_t backlog_head, backlog_tail, backlog_cap, max_backlog;
static struct key_count keys[MAX_KEYS];
static int nkeys;
static struct samples admitted[2];
static double shed_ms_max;
static char list_request[2048];
static size_t list_len;
static char create_head[2048];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(2);
}

static void count(const char *key) {
    for (int k = 0; k < nkeys; k++)
        if (strcmp(keys[k].key, key) == 0) {
            keys[k].n++;
            return;
        }
    if (nkeys < MAX_KEYS) {
        snprintf(keys[nkeys].key, sizeof keys[nkeys].key, "%s", key);
        keys[nkeys++].n = 1;
    }
}

static void add_sample(struct samples *s, double ms) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 65536;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (!s->v) die("realloc");
    }
    s->v[s->n++] = ms;
}

static void backlog_push(struct pending p) {
    if (backlog_tail - backlog_head == backlog_cap) {
        size_t cap = backlog_cap ? backlog_cap * 2 : 65536;
        struct pending *grown = malloc(cap * sizeof *grown);
        if (!grown) die("malloc");
        for (size_t k = backlog_head; k < backlog_tail; k++)
            grown[k - backlog_head] = backlog[k % backlog_cap];
        free(backlog);
        backlog = grown;
        backlog_tail -= backlog_head;
        backlog_head = 0;
        backlog_cap = cap;
    }
    backlog[backlog_tail++ % backlog_cap] = p;
    if (backlog_tail - backlog_head > max_backlog) max_backlog = backlog_tail - backlog_head;
}

static void watch(struct conn *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(epfd, op, c->fd, &ev) < 0) die("epoll_ctl");
}

static void close_conn(struct conn *c) {
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c->owned);
    /* unlink from the idle list if it is there */
    for (struct conn **p = &idle_list; *p; p = &(*p)->next_idle)
        if (*p == c) {
            *p = c->next_idle;
            break;
        }
    open_connections--;
    free(c);
}

static void fail(struct conn *c) {
    if (c->waiting) {
        char key[96];
        snprintf(key, sizeof key, "%s socket-error", KIND_NAMES[c->kind]);
        count(key);
        socket_errors++;
        outstanding--;
    }
    close_conn(c);
}

/* Write what is pending; returns 0 if the connection failed (and is gone). */
static int flush_out(struct conn *c) {
    while (c->out_len) {
        ssize_t n = write(c->fd, c->out, c->out_len);
        if (n < 0) {
            if (errno == EAGAIN) {
                watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_MOD);
                return 1;
            }
            fail(c);
            return 0;
        }
        c->out += n;
        c->out_len -= n;
    }
    return 1;
}

/* Returns 0 if the connection failed (and is gone). */
static int send_request(struct conn *c, struct pending p) {
    c->waiting = 1;
    c->kind = p.kind;
    c->due = p.due;
    c->len = 0;
    free(c->owned);
    c->owned = NULL;
    if (p.kind == LIST) {
        c->out = list_request;
        c->out_len = list_len;
    } else {
        char body[1024];
        int body_len = snprintf(body, sizeof body, CREATE_BODY, args.index, p.i);
        char *whole = malloc(4096);
        if (!whole) die("malloc");
        int n = snprintf(whole, 4096, "%sContent-Length: %d\r\n\r\n%s", create_head, body_len, body);
        c->out = c->owned = whole;
        c->out_len = n;
    }
    return c->connected ? flush_out(c) : 1;
}

static void open_conn(struct pending p) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct conn *c = calloc(1, sizeof *c);
    if (!c) die("calloc");
    c->fd = fd;
    open_connections++;
    if (connect(fd, (struct sockaddr *)&address, sizeof address) < 0 && errno != EINPROGRESS) {
        c->waiting = 1;
        c->kind = p.kind;
        watch(c, EPOLLIN, EPOLL_CTL_ADD);
        fail(c);
        return;
    }
    watch(c, EPOLLIN | EPOLLOUT, EPOLL_CTL_ADD);
    send_request(c, p);
}

static void dispatch(struct pending p) {
    outstanding++;
    if (idle_list) {
        struct conn *c = idle_list;
        idle_list = c->next_idle;
        send_request(c, p);
    } else if (open_connections < args.max_connections) {
        open_conn(p);
    } else {
        backlog_push(p);
    }
}

/* The connection is free: the oldest waiting request goes out on it, or it idles.
   Returns 0 if it failed (and is gone). */
static int connection_free(struct conn *c) {
    if (backlog_tail > backlog_head) {
        struct pending p = backlog[backlog_head++ % backlog_cap];
        return send_request(c, p);
    }
    c->next_idle = idle_list;
    idle_list = c;
    return 1;
}

/* A complete answer in c->buf? Then count it; returns 1 if the connection lives on. */
static int take_answer(struct conn *c) {
    c->buf[c->len] = '\0';
    char *end = strstr(c->buf, "\r\n\r\n");
    if (!end) return 1;
    size_t head_len = end - c->buf + 4;
    long length = 0;
    int closing = 0;
    for (char *line = strstr(c->buf, "\r\n"); line && line < end;) {
        char *field = line + 2, *next = strstr(field, "\r\n");
        if (strncasecmp(field, "content-length:", 15) == 0) {
            length = strtol(field + 15, NULL, 10);
        } else if (strncasecmp(field, "connection:", 11) == 0) {
            char *word = strcasestr(field, "close");
            closing = word != NULL && word < next;
        }
        line = next;
    }
    if (c->len < head_len + length) return 1;
    int status = atoi(c->buf + 9);
    char code[48] = "";
    char saved = c->buf[head_len + length];
    c->buf[head_len + length] = '\0';
    char *found = strstr(c->buf + head_len, "\"error_code\":");
    if (found) {
        found = strchr(found + 13, '"');
        if (found) {
            char *stop = strchr(found + 1, '"');
            if (stop && stop - found - 1 < (long)sizeof code) {
                memcpy(code, found + 1, stop - found - 1);
                code[stop - found - 1] = '\0';
            }
        }
    }
    c->buf[head_len + length] = saved;
    double elapsed_ms = (now() - c->due) * 1000;
    char key[96];
    if (closing || !code[0])
        snprintf(key, sizeof key, "%s %d", KIND_NAMES[c->kind], status);
    else
        snprintf(key, sizeof key, "%s %d %s", KIND_NAMES[c->kind], status, code);
    count(key);
    if (status == 200) add_sample(&admitted[c->kind], elapsed_ms);
    else if (elapsed_ms > shed_ms_max) shed_ms_max = elapsed_ms;
    outstanding--;
    c->waiting = 0;
    memmove(c->buf, c->buf + head_len + length, c->len - head_len - length);
    c->len -= head_len + length;
    if (closing) {
        close_conn(c);
        return 0;
    }
    return connection_free(c);
}

static void on_event(struct conn *c, uint32_t events) {
    if (!c->connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
        int error = 0;
        socklen_t size = sizeof error;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
        if (error) {
            fail(c);
            return;
        }
        c->connected = 1;
    }
    if (events & EPOLLOUT) {
        if (c->out_len && !flush_out(c)) return;
        if (c->out_len) return;
        watch(c, EPOLLIN, EPOLL_CTL_MOD);
    }
    if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
        for (;;) {
            if (c->len >= BUFSIZE - 1) {
                fail(c);  /* an answer larger than the buffer: not one of ours */
                return;
            }
            ssize_t n = read(c->fd, c->buf + c->len, BUFSIZE - 1 - c->len);
            if (n < 0) {
                if (errno == EAGAIN) return;
                fail(c);
                return;
            }
            if (n == 0) {
                fail(c);  /* the server closed it; an idle one is just gone */
                return;
            }
            c->len += n;
            if (!c->waiting) continue;
            if (!take_answer(c)) return;
        }
    }
}

static int compare(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_samples(const struct samples *s) {
    putchar('[');
    for (size_t k = 0; k < s->n; k++) printf(k ? ",%.2f" : "%.2f", s->v[k]);
    putchar(']');
}

static void usage(void) {
    fprintf(stderr, "usage: open_loop --port P --token T --rate R --duration S [--index N]"
                    " [--max-connections N] [--create-every N] [--host H]\n");
    exit(2);
}

int main(int argc, char **argv) {
    for (int k = 1; k < argc; k++) {
        if (k + 1 >= argc) usage();
        const char *name = argv[k], *value = argv[++k];
        if (!strcmp(name, "--host")) args.host = value;
        else if (!strcmp(name, "--port")) args.port = atoi(value);
        else if (!strcmp(name, "--token")) args.token = value;
        else if (!strcmp(name, "--rate")) args.rate = atof(value);
        else if (!strcmp(name, "--duration")) args.duration = atof(value);
        else if (!strcmp(name, "--create-every")) args.create_every = atoi(value);
        else if (!strcmp(name, "--index")) args.index = atoi(value);
        else if (!strcmp(name, "--max-connections")) args.max_connections = atoi(value);
        else usage();
    }
    if (!args.port || !args.token || args.rate <= 0 || args.duration <= 0) usage();
    struct rlimit files;
    getrlimit(RLIMIT_NOFILE, &files);
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
    address.sin_family = AF_INET;
    address.sin_port = htons(args.port);
    if (inet_pton(AF_INET, args.host, &address.sin_addr) != 1) usage();
    list_len = snprintf(list_request, sizeof list_request,
                        "GET %s HTTP/1.1\r\nHost: %s:%d\r\nX-Auth-Token: %s\r\n\r\n", LIST_PATH,
                        args.host, args.port, args.token);
    snprintf(create_head, sizeof create_head,
             "POST %s HTTP/1.1\r\nHost: %s:%d\r\nX-Auth-Token: %s\r\n"
             "Content-Type: application/json\r\n",
             CREATE_PATH, args.host, args.port, args.token);
    if (list_len >= sizeof list_request) usage();
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) die("epoll_create1");

    long total = (long)(args.rate * args.duration);
    double start = now() + 0.05;
    long i = 0;
    struct epoll_event events[256];
    while (i < total) {
        double t = now();
        long due_by_now = (long)((t - start) * args.rate) + 1;
        if (due_by_now > total) due_by_now = total;
        for (; i < due_by_now; i++) {
            double due = start + i / args.rate;
            if (t - due > LATE_S) late_sends++;
            enum kind kind = (args.create_every && i % args.create_every == 0) ? CREATE : LIST;
            dispatch((struct pending){kind, i, due});
        }
        /* wake for the next due request (at least every millisecond) or for answers */
        double wait_ms = (start + i / args.rate - now()) * 1000;
        int timeout = wait_ms <= 0 ? 0 : wait_ms < 1 ? 1 : (int)wait_ms;
        int n = epoll_wait(epfd, events, 256, timeout);
        for (int k = 0; k < n; k++) on_event(events[k].data.ptr, events[k].events);
    }
    double sent_s = now() - start;
    double deadline = now() + DRAIN_S;
    while (outstanding > 0 && now() < deadline) {
        int n = epoll_wait(epfd, events, 256, 50);
        for (int k = 0; k < n; k++) on_event(events[k].data.ptr, events[k].events);
    }

    printf("{\"offered\": %ld, \"offered_per_s\": %.1f, \"schedule_s\": %.3f, \"statuses\": {",
           total, total / args.duration, sent_s);
    for (int k = 0; k < nkeys; k++) printf("%s\"%s\": %ld", k ? ", " : "", keys[k].key, keys[k].n);
    printf("}, \"unanswered\": %ld, \"socket_errors\": %ld, \"late_sends\": %ld,"
           " \"max_backlog\": %zu, \"connections\": %d, \"shed_ms_max\": %.2f,"
           " \"admitted_ms\": {\"list\": ",
           outstanding, socket_errors, late_sends, max_backlog, open_connections, shed_ms_max);
    qsort(admitted[LIST].v, admitted[LIST].n, sizeof(double), compare);
    qsort(admitted[CREATE].v, admitted[CREATE].n, sizeof(double), compare);
    print_samples(&admitted[LIST]);
    printf(", \"create\": ");
    print_samples(&admitted[CREATE]);
    printf("}}\n");
    return 0;
}
