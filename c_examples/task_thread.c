/* task_thread: asynchronous reads in the task-thread model.
 *
 *   task_thread <uri> <local-copy>
 *
 * 4 threads share one handle. Each submits 64 gtio_pread_async requests (its own
 * gtio_usercb_t array), waits with poll() on gtio_poll_fd(), drains its ring with
 * gtio_poll until it returns 0 and runs ucp_fun(ucp_res, ucp_arg). The callbacks
 * check that they run on the submitting thread and that the bytes match the local
 * copy. Thread 0 also cancels a few requests: each still completes exactly once,
 * with the bytes or -ECANCELED.
 *
 * Environment: GTIO_CA_BUNDLE=<pem> trusts an extra CA (for https test servers).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gtio.h>

#define PROG "task_thread"
#define N_THREADS 4
#define N_REQS 64
#define N_CANCEL 8
#define MAX_LEN 200000u
#define WAIT_MS 30000

struct thread_ctx;

struct req {
    gtio_usercb_t ucb; /* cb_data points back to this struct */
    struct thread_ctx *t;
    unsigned char *buf;
    uint64_t off;
    size_t count;
    int may_cancel;
    int completions;
};

struct thread_ctx {
    int id;
    pthread_t tid;
    struct req reqs[N_REQS + N_CANCEL];
    int submitted;
    int completed;
    int cancelled;
    uint64_t bytes;
    uint64_t rng;
};

static GTIO *h;
static const unsigned char *local;
static uint64_t local_len;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;
static int failures;

static void fail(const GTIO_Error *e, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&fail_lock);
    if (++failures <= 20) {
        fprintf(stderr, PROG ": FAIL: ");
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
        if (e && e->code != 0)
            fprintf(stderr, " [GTIO_Error code=%d (%s) http_status=%d message=\"%s\"]",
                    (int)e->code, strerror((int)e->code), (int)e->http_status, e->message);
        fputc('\n', stderr);
    }
    pthread_mutex_unlock(&fail_lock);
}

static uint64_t next_rand(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 17;
}

static unsigned char *read_local(const char *path, uint64_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf;
    long n;
    if (!f) {
        fprintf(stderr, PROG ": cannot open local copy %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fclose(f);
        return NULL;
    }
    buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        fprintf(stderr, PROG ": cannot read %s\n", path);
        free(buf);
        fclose(f);
        return NULL;
    }
    fclose(f);
    *len = (uint64_t)n;
    return buf;
}

static void on_complete(gtio_usercb_t *ucb)
{
    struct req *r = ucb->cb_data;
    struct thread_ctx *t = r->t;
    uint64_t want = r->off >= local_len ? 0
                  : (r->count < local_len - r->off ? r->count : local_len - r->off);

    if (!pthread_equal(pthread_self(), t->tid))
        fail(NULL, "thread %d: request at offset %" PRIu64 " completed on another thread", t->id,
             r->off);
    if (++r->completions != 1)
        fail(NULL, "thread %d: request at offset %" PRIu64 " completed %d times", t->id, r->off,
             r->completions);
    t->completed++;
    if (r->may_cancel && ucb->ret == -ECANCELED) {
        t->cancelled++;
        return;
    }
    if (ucb->ret < 0 || (uint64_t)ucb->ret != want) {
        fail(NULL, "thread %d: async read of %zu at offset %" PRIu64 ": expected %" PRIu64
                   ", got %" PRId64 "%s%s",
             t->id, r->count, r->off, want, ucb->ret, ucb->ret < 0 ? " " : "",
             ucb->ret < 0 ? strerror((int)-ucb->ret) : "");
        return;
    }
    if (want && memcmp(r->buf, local + r->off, (size_t)want) != 0) {
        uint64_t i;
        for (i = 0; i < want && r->buf[i] == local[r->off + i]; i++)
            ;
        fail(NULL, "thread %d: async read at offset %" PRIu64 ": byte mismatch at stream offset %" PRIu64
                   ": expected 0x%02x, got 0x%02x",
             t->id, r->off, r->off + i, local[r->off + i], r->buf[i]);
        return;
    }
    t->bytes += want;
}

/* Drain the calling thread's ring; returns the number of completions run. */
static int drain(void)
{
    gtio_usercomp_t ucps[16];
    int n, i, total = 0;
    while ((n = gtio_poll(ucps, 16)) > 0) {
        for (i = 0; i < n; i++)
            ucps[i].ucp_fun(ucps[i].ucp_res, ucps[i].ucp_arg);
        total += n;
    }
    if (n < 0)
        fail(NULL, "gtio_poll: expected >= 0, got %d", n);
    return total;
}

/* Wait until `target` completions have arrived on this thread; 0 ok, -1 timed out. */
static int wait_for(struct thread_ctx *t, int fd, int target)
{
    while (t->completed < target) {
        struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
        int rc = poll(&p, 1, WAIT_MS);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0) {
            fail(NULL, "thread %d: poll(gtio_poll_fd): %s", t->id, strerror(errno));
            return -1;
        }
        if (drain() == 0 && rc == 0) {
            fail(NULL, "thread %d: no completion within %d ms (%d of %d done)", t->id, WAIT_MS,
                 t->completed, target);
            return -1;
        }
    }
    return 0;
}

static int submit(struct thread_ctx *t, struct req *r, int fd, uint32_t flags)
{
    GTIO_Error err;
    for (;;) {
        memset(&err, 0, sizeof err);
        if (gtio_pread_async(h, r->buf, r->count, r->off, flags, &r->ucb, &err) == 0) {
            t->submitted++;
            return 0;
        }
        if (err.code != EAGAIN) {
            fail(&err, "thread %d: gtio_pread_async(%zu, offset %" PRIu64 "): expected 0, got -1",
                 t->id, r->count, r->off);
            return -1;
        }
        /* ring full: backpressure; make room by reaping a completion */
        if (t->completed >= t->submitted) {
            fail(&err, "thread %d: EAGAIN with nothing in flight", t->id);
            return -1;
        }
        if (wait_for(t, fd, t->completed + 1) != 0)
            return -1;
    }
}

static void *thread_main(void *arg)
{
    struct thread_ctx *t = arg;
    GTIO_Error err;
    int i, fd, nreq = t->id == 0 ? N_REQS + N_CANCEL : N_REQS;

    t->tid = pthread_self();
    t->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)(t->id + 1) * 0xBF58476D1CE4E5B9ULL;
    fd = gtio_poll_fd();
    if (fd < 0) {
        fail(NULL, "thread %d: gtio_poll_fd: expected an fd, got %d", t->id, fd);
        return NULL;
    }
    for (i = 0; i < nreq; i++) {
        struct req *r = &t->reqs[i];
        r->t = t;
        r->ucb.cb_func = on_complete;
        r->ucb.cb_data = r;
        r->ucb.ret = 0;
        r->count = (size_t)(next_rand(&t->rng) % (MAX_LEN + 1));
        if (i % 16 == 7)
            r->off = local_len + next_rand(&t->rng) % 1000; /* past the end: 0 bytes */
        else if (i % 16 == 9)
            r->off = local_len - 1 - next_rand(&t->rng) % 5000; /* straddles the end */
        else
            r->off = next_rand(&t->rng) % local_len;
        r->may_cancel = i >= N_REQS;
        r->buf = malloc(r->count ? r->count : 1);
        if (!r->buf) {
            fail(NULL, "out of memory");
            break;
        }
        if (submit(t, r, fd, (i % 3 == 2) ? GTIO_READ_BACKGROUND : 0) != 0) {
            free(r->buf);
            r->buf = NULL;
            break;
        }
        if (r->may_cancel) {
            memset(&err, 0, sizeof err);
            /* the result depends on timing; the completion tells what happened */
            (void)gtio_cancel(h, &r->ucb, &err);
        }
    }
    wait_for(t, fd, t->submitted);
    /* nothing else may arrive on this ring */
    if (drain() != 0)
        fail(NULL, "thread %d: completions after all requests were done", t->id);
    if (t->completed != t->submitted)
        fail(NULL, "thread %d: expected %d completions, got %d", t->id, t->submitted, t->completed);
    if (t->completed == t->submitted) {
        for (i = 0; i < nreq; i++)
            free(t->reqs[i].buf);
    } /* else: buffers may still be in use; leak rather than risk it */
    return NULL;
}

int main(int argc, char **argv)
{
    static struct thread_ctx threads[N_THREADS];
    pthread_t tids[N_THREADS];
    unsigned char *copy;
    GTIO_Error err;
    int64_t size;
    int i, started, submitted = 0, completed = 0, cancelled = 0;
    uint64_t bytes = 0;
    const char *ca = getenv("GTIO_CA_BUNDLE");

    if (argc != 3) {
        fprintf(stderr, "usage: %s <uri> <local-copy>\n", argv[0]);
        return 2;
    }
    if (!(copy = read_local(argv[2], &local_len)))
        return 1;
    local = copy;
    if (local_len < 65536) {
        fprintf(stderr, PROG ": the local copy must be at least 64 KiB\n");
        free(copy);
        return 2;
    }
    memset(&err, 0, sizeof err);
    if (ca && *ca) {
        GTIO_Config cfg;
        gtio_config_default(&cfg);
        cfg.ca_bundle = ca;
        if (gtio_lib_init(&cfg, &err) != 0) {
            fail(&err, "gtio_lib_init with ca_bundle=%s: expected 0, got -1", ca);
            goto out;
        }
    }
    h = gtio_open_uri(argv[1], NULL, &err);
    if (!h) {
        fail(&err, "gtio_open_uri(%s): expected a handle, got NULL", argv[1]);
        goto out;
    }
    size = gtio_size(h, &err);
    if (size != (int64_t)local_len) {
        fail(&err, "gtio_size: expected %" PRIu64 ", got %" PRId64, local_len, size);
        goto out;
    }
    for (started = 0; started < N_THREADS; started++) {
        threads[started].id = started;
        if (pthread_create(&tids[started], NULL, thread_main, &threads[started]) != 0) {
            fail(NULL, "pthread_create failed");
            break;
        }
    }
    for (i = 0; i < started; i++) {
        pthread_join(tids[i], NULL);
        submitted += threads[i].submitted;
        completed += threads[i].completed;
        cancelled += threads[i].cancelled;
        bytes += threads[i].bytes;
    }
    if (submitted != N_THREADS * N_REQS + N_CANCEL)
        fail(NULL, "submissions: expected %d, got %d", N_THREADS * N_REQS + N_CANCEL, submitted);
    if (completed != submitted)
        fail(NULL, "completions: expected %d (one per submission), got %d", submitted, completed);
    /* the main thread submitted nothing: its ring stays empty */
    if (drain() != 0)
        fail(NULL, "main thread: got completions of other threads' requests");
    memset(&err, 0, sizeof err);
    if (gtio_close(h, &err) != 0)
        fail(&err, "gtio_close: expected 0, got -1");
    h = NULL;

out:
    if (h)
        gtio_close(h, NULL);
    free(copy);
    if (failures) {
        fprintf(stderr, PROG ": FAILED: %d check(s) failed (uri %s)\n", failures, argv[1]);
        return 1;
    }
    printf(PROG ": OK: %s: %d threads, %d submissions, %d completions on their own threads "
           "(%d cancelled), %" PRIu64 " bytes verified\n",
           argv[1], N_THREADS, submitted, completed, cancelled, bytes);
    return 0;
}
