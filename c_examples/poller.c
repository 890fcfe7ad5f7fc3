/* poller: asynchronous reads with the library's poller thread.
 *
 *   poller <uri> <local-copy>
 *
 * gtio_config_default + poller_thread = 1 + gtio_lib_init, then 100 async reads.
 * The callbacks run on the library's thread (never on main), check the bytes
 * against the local copy and signal a condition variable; main waits for all of
 * them, closes the handle and calls gtio_lib_fini.
 *
 * Environment: GTIO_CA_BUNDLE=<pem> trusts an extra CA (for https test servers).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <gtio.h>

#define PROG "poller"
#define N_REQS 100
#define MAX_LEN 150000u
#define WAIT_S 30

struct req {
    gtio_usercb_t ucb; /* cb_data points back to this struct */
    unsigned char *buf;
    uint64_t off;
    size_t count;
    int completions;
};

static const unsigned char *local;
static uint64_t local_len;
static pthread_t main_tid;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cond = PTHREAD_COND_INITIALIZER;
static int completed, failures;
static uint64_t bytes;

/* Call with `lock` held or from main before threads exist. */
static void vfail(const GTIO_Error *e, const char *fmt, va_list ap)
{
    if (++failures > 20)
        return;
    fprintf(stderr, PROG ": FAIL: ");
    vfprintf(stderr, fmt, ap);
    if (e && e->code != 0)
        fprintf(stderr, " [GTIO_Error code=%d (%s) http_status=%d message=\"%s\"]", (int)e->code,
                strerror((int)e->code), (int)e->http_status, e->message);
    fputc('\n', stderr);
}

static void fail(const GTIO_Error *e, const char *fmt, ...)
{
    va_list ap;
    pthread_mutex_lock(&lock);
    va_start(ap, fmt);
    vfail(e, fmt, ap);
    va_end(ap);
    pthread_mutex_unlock(&lock);
}

static void fail_locked(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(NULL, fmt, ap);
    va_end(ap);
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

/* Runs on the library's poller thread. */
static void on_complete(gtio_usercb_t *ucb)
{
    struct req *r = ucb->cb_data;
    uint64_t want = r->off >= local_len ? 0
                  : (r->count < local_len - r->off ? r->count : local_len - r->off);
    int ok = 1;

    pthread_mutex_lock(&lock);
    if (pthread_equal(pthread_self(), main_tid)) {
        fail_locked("callback for offset %" PRIu64 " ran on the main thread, expected the poller thread",
                    r->off);
        ok = 0;
    }
    if (++r->completions != 1) {
        fail_locked("request at offset %" PRIu64 " completed %d times", r->off, r->completions);
        ok = 0;
    }
    if (ucb->ret < 0 || (uint64_t)ucb->ret != want) {
        fail_locked("async read of %zu at offset %" PRIu64 ": expected %" PRIu64 ", got %" PRId64 "%s%s",
                    r->count, r->off, want, ucb->ret, ucb->ret < 0 ? " " : "",
                    ucb->ret < 0 ? strerror((int)-ucb->ret) : "");
        ok = 0;
    } else if (want && memcmp(r->buf, local + r->off, (size_t)want) != 0) {
        uint64_t i;
        for (i = 0; i < want && r->buf[i] == local[r->off + i]; i++)
            ;
        fail_locked("async read at offset %" PRIu64 ": byte mismatch at stream offset %" PRIu64
                    ": expected 0x%02x, got 0x%02x",
                    r->off, r->off + i, local[r->off + i], r->buf[i]);
        ok = 0;
    }
    if (ok)
        bytes += want;
    completed++;
    pthread_cond_signal(&cond);
    pthread_mutex_unlock(&lock);
}

int main(int argc, char **argv)
{
    static struct req reqs[N_REQS];
    unsigned char *copy;
    GTIO_Config cfg;
    GTIO_Error err;
    GTIO *h = NULL;
    int64_t size;
    int i, submitted = 0, inited = 0, all_done = 0;
    uint64_t rng = 0xD1B54A32D192ED03ULL;
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
    main_tid = pthread_self();

    memset(&err, 0, sizeof err);
    gtio_config_default(&cfg);
    cfg.poller_thread = 1;
    if (ca && *ca)
        cfg.ca_bundle = ca;
    if (gtio_lib_init(&cfg, &err) != 0) {
        fail(&err, "gtio_lib_init(poller_thread = 1): expected 0, got -1");
        goto out;
    }
    inited = 1;
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

    for (i = 0; i < N_REQS; i++) {
        struct req *r = &reqs[i];
        struct timespec backoff = { 0, 1000000 };
        int tries = 0;
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        r->count = (size_t)((rng >> 17) % (MAX_LEN + 1));
        rng = rng * 6364136223846793005ULL + 1442695040888963407ULL;
        r->off = (i % 25 == 24) ? local_len + (rng >> 17) % 100 : (rng >> 17) % local_len;
        r->ucb.cb_func = on_complete;
        r->ucb.cb_data = r;
        r->buf = malloc(r->count ? r->count : 1);
        if (!r->buf) {
            fail(NULL, "out of memory");
            break;
        }
        for (;;) {
            memset(&err, 0, sizeof err);
            if (gtio_pread_async(h, r->buf, r->count, r->off, i % 4 == 3 ? GTIO_READ_BACKGROUND : 0,
                                 &r->ucb, &err) == 0) {
                submitted++;
                break;
            }
            /* EAGAIN: ring full, the poller thread is draining it; back off briefly */
            if (err.code != EAGAIN || ++tries > 30000) {
                fail(&err, "gtio_pread_async #%d (%zu at offset %" PRIu64 "): expected 0, got -1", i,
                     r->count, r->off);
                break;
            }
            nanosleep(&backoff, NULL);
        }
        if (submitted != i + 1) {
            free(r->buf);
            r->buf = NULL;
            break;
        }
    }

    /* wait for every completion (bounded) */
    {
        struct timespec deadline;
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_sec += WAIT_S;
        pthread_mutex_lock(&lock);
        while (completed < submitted) {
            if (pthread_cond_timedwait(&cond, &lock, &deadline) == ETIMEDOUT)
                break;
        }
        if (completed != submitted)
            fail_locked("completions: expected %d within %d s, got %d", submitted, WAIT_S, completed);
        else
            all_done = 1;
        pthread_mutex_unlock(&lock);
    }

    memset(&err, 0, sizeof err);
    if (gtio_close(h, &err) != 0)
        fail(&err, "gtio_close: expected 0, got -1");
    h = NULL;
    if (all_done) {
        for (i = 0; i < submitted; i++)
            free(reqs[i].buf);
    } /* else: buffers may still be in use; leak rather than risk it */

out:
    if (h)
        gtio_close(h, NULL);
    if (inited) {
        memset(&err, 0, sizeof err);
        if (gtio_lib_fini(&err) != 0)
            fail(&err, "gtio_lib_fini: expected 0, got -1");
    }
    free(copy);
    if (failures) {
        fprintf(stderr, PROG ": FAILED: %d check(s) failed (uri %s)\n", failures, argv[1]);
        return 1;
    }
    printf(PROG ": OK: %s: %d async reads completed on the poller thread, %" PRIu64
           " bytes verified\n",
           argv[1], completed, bytes);
    return 0;
}
