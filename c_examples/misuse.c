/* misuse: the C ABI's contract under misuse, every outcome checked exactly.
 *
 *   misuse <uri> [<local-copy>]
 *
 * NULL for every pointer argument (and err = NULL everywhere), closed and
 * foreign handles (a stack address, (GTIO *)1, (GTIO *)-1) for every
 * handle-taking function, double gtio_close / gtio_closedir, gtio_free_file_list
 * of foreign, NULL and already-freed lists, counts near SIZE_MAX, offsets near
 * UINT64_MAX, lseek overflow, unknown async flags, one ucb submitted twice,
 * callbacks that call gtio_pread, gtio_pread_async and gtio_poll, a thread that
 * submits reads and exits without polling, and gtio_lib_fini with handles open.
 * With <local-copy>, every byte read is checked against it.
 *
 * Prints one line per failed check (to stderr) and a summary; exits 0 only if
 * every check held. Runs clean under valgrind (make check-mem) and ASan/UBSan
 * (make check-asan).
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
#include <time.h>

#include <gtio.h>

#define PROG "misuse"
#define MAX_PRINTED_FAILURES 50
#define WAIT_MS 30000
#define SMALL 4096u

static int failures;
static int checks;
static const char *uri;
static unsigned char *local;
static uint64_t local_len;
static int64_t stream_size;

static void fail(const GTIO_Error *e, const char *fmt, ...)
{
    va_list ap;
    failures++;
    if (failures > MAX_PRINTED_FAILURES)
        return;
    fprintf(stderr, PROG ": FAIL: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    if (e && e->code != 0)
        fprintf(stderr, " [GTIO_Error code=%d (%s) http_status=%d message=\"%s\"]",
                (int)e->code, strerror((int)e->code), (int)e->http_status, e->message);
    fputc('\n', stderr);
}

static void reset(GTIO_Error *e)
{
    memset(e, 0, sizeof *e);
}

/* A failing call: `got` must be `want` and e->code must be `code`. */
static void expect_err(const char *what, int64_t got, int64_t want, const GTIO_Error *e, int code)
{
    checks++;
    if (got != want)
        fail(e, "%s: returned %" PRId64 ", expected %" PRId64 " (errno %s)", what, got, want,
             strerror(code));
    else if (e->code != code)
        fail(e, "%s: GTIO_Error.code %d (%s), expected %d (%s)", what, (int)e->code,
             strerror((int)e->code), code, strerror(code));
    else if (e->message[0] == '\0')
        fail(e, "%s: GTIO_Error.message is empty", what);
}

/* A pointer-returning failing call. */
static void expect_null(const char *what, const void *got, const GTIO_Error *e, int code)
{
    checks++;
    if (got != NULL)
        fail(NULL, "%s: returned a non-NULL pointer, expected NULL (errno %s)", what,
             strerror(code));
    else if (e->code != code)
        fail(e, "%s: GTIO_Error.code %d (%s), expected %d (%s)", what, (int)e->code,
             strerror((int)e->code), code, strerror(code));
}

/* A call that must succeed with exactly `want`. */
static void expect_ret(const char *what, int64_t got, int64_t want, const GTIO_Error *e)
{
    checks++;
    if (got != want)
        fail(e, "%s: returned %" PRId64 ", expected %" PRId64, what, got, want);
}

static void expect_true(const char *what, int cond)
{
    checks++;
    if (!cond)
        fail(NULL, "%s", what);
}

/* The bytes of [off, off+n) match the local copy (when there is one). */
static void expect_bytes(const char *what, const unsigned char *buf, uint64_t off, uint64_t n)
{
    uint64_t i;
    if (!local)
        return;
    checks++;
    if (off > local_len || n > local_len - off) {
        fail(NULL, "%s: %" PRIu64 " bytes at %" PRIu64 " is past the local copy", what, n, off);
        return;
    }
    if (memcmp(buf, local + off, (size_t)n) == 0)
        return;
    for (i = 0; i < n && buf[i] == local[off + i]; i++)
        ;
    fail(NULL, "%s: byte mismatch at stream offset %" PRIu64 ": expected 0x%02x, got 0x%02x", what,
         off + i, local[off + i], buf[i]);
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

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------------------ */
/* Async requests: a ucb, its buffer and a completion counter. */

struct req {
    gtio_usercb_t ucb; /* cb_data points back to this struct */
    unsigned char *buf;
    uint64_t off;
    size_t count;
    int completions;
    void (*then)(struct req *r); /* run from the callback, if set */
};

static void on_complete(gtio_usercb_t *ucb)
{
    struct req *r = ucb->cb_data;
    r->completions++;
    if (r->then)
        r->then(r);
}

static void req_init(struct req *r, unsigned char *buf, size_t count, uint64_t off)
{
    memset(r, 0, sizeof *r);
    r->ucb.cb_func = on_complete;
    r->ucb.cb_data = r;
    r->ucb.ret = INT64_MIN;
    r->buf = buf;
    r->count = count;
    r->off = off;
}

/* Expected result of reading r: the clipped length. */
static int64_t want_len(const struct req *r)
{
    uint64_t size = (uint64_t)stream_size;
    if (r->off >= size)
        return 0;
    return (int64_t)(r->count < size - r->off ? r->count : size - r->off);
}

/* Drain this thread's ring once; returns the completions run, or -1. */
static int drain_once(void)
{
    gtio_usercomp_t ucps[16];
    int n = gtio_poll(ucps, 16), i;
    if (n < 0) {
        fail(NULL, "gtio_poll: returned %d (errno %s)", n, strerror(errno));
        return -1;
    }
    for (i = 0; i < n; i++)
        ucps[i].ucp_fun(ucps[i].ucp_res, ucps[i].ucp_arg);
    return n;
}

/* Poll until every request in rs[] has completed at least once (or time runs out). */
static int wait_all(const char *what, struct req **rs, int n)
{
    int64_t deadline = now_ms() + WAIT_MS;
    int fd = gtio_poll_fd();
    if (fd < 0) {
        fail(NULL, "%s: gtio_poll_fd returned %d", what, fd);
        return -1;
    }
    for (;;) {
        int i, done = 1;
        if (drain_once() < 0)
            return -1;
        for (i = 0; i < n; i++)
            if (rs[i]->completions == 0)
                done = 0;
        if (done)
            return 0;
        if (now_ms() > deadline) {
            fail(NULL, "%s: completions did not arrive within %d ms", what, WAIT_MS);
            return -1;
        }
        {
            struct pollfd p = { .fd = fd, .events = POLLIN, .revents = 0 };
            (void)poll(&p, 1, 50);
        }
    }
}

/* A request that completed exactly once with its full length and the right bytes. */
static void expect_read_ok(const char *what, struct req *r)
{
    checks++;
    if (r->completions != 1) {
        fail(NULL, "%s: completed %d times, expected once", what, r->completions);
        return;
    }
    if (r->ucb.ret != want_len(r)) {
        fail(NULL, "%s: ret %" PRId64 ", expected %" PRId64 "%s%s", what, r->ucb.ret, want_len(r),
             r->ucb.ret < 0 ? " " : "", r->ucb.ret < 0 ? strerror((int)-r->ucb.ret) : "");
        return;
    }
    expect_bytes(what, r->buf, r->off, (uint64_t)r->ucb.ret);
}

/* ------------------------------------------------------------------------ */

/* Every handle-taking function refuses h with EBADF, with and without err, and
 * writes nothing to the buffers it is given. */
static void expect_ebadf_everywhere(GTIO *h, const char *name)
{
    char what[160];
    unsigned char buf[64];
    GTIO_Error e;
    GTIO_FileInfo *fi = (GTIO_FileInfo *)&buf; /* must stay untouched */
    struct req r;
    int i;

    memset(buf, 0x5A, sizeof buf);
#define W(s) (snprintf(what, sizeof what, "%s handle: %s", name, s), what)
    reset(&e);
    expect_err(W("gtio_size"), gtio_size(h, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_read"), gtio_read(h, buf, sizeof buf, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_pread"), gtio_pread(h, buf, sizeof buf, 0, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_lseek"), gtio_lseek(h, 0, SEEK_SET, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_prefetch"), gtio_prefetch(h, 0, 100, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_get_file_list"), gtio_get_file_list(h, &fi, &e), -1, &e, EBADF);
    expect_true(W("gtio_get_file_list wrote *fi"), fi == (GTIO_FileInfo *)&buf);
    reset(&e);
    expect_null(W("gtio_opendir"), gtio_opendir(h, &e), &e, EBADF);
    req_init(&r, buf, sizeof buf, 0);
    reset(&e);
    expect_err(W("gtio_pread_async"), gtio_pread_async(h, buf, sizeof buf, 0, 0, &r.ucb, &e), -1,
               &e, EBADF);
    reset(&e);
    expect_err(W("gtio_cancel"), gtio_cancel(h, &r.ucb, &e), -1, &e, EBADF);
    reset(&e);
    expect_err(W("gtio_close"), gtio_close(h, &e), -1, &e, EBADF);

    /* err = NULL everywhere. */
    expect_ret(W("gtio_size(err=NULL)"), gtio_size(h, NULL), -1, NULL);
    expect_ret(W("gtio_read(err=NULL)"), gtio_read(h, buf, sizeof buf, NULL), -1, NULL);
    expect_ret(W("gtio_pread(err=NULL)"), gtio_pread(h, buf, sizeof buf, 0, NULL), -1, NULL);
    expect_ret(W("gtio_lseek(err=NULL)"), gtio_lseek(h, 0, SEEK_SET, NULL), -1, NULL);
    expect_ret(W("gtio_prefetch(err=NULL)"), gtio_prefetch(h, 0, 1, NULL), -1, NULL);
    expect_ret(W("gtio_get_file_list(err=NULL)"), gtio_get_file_list(h, &fi, NULL), -1, NULL);
    expect_true(W("gtio_opendir(err=NULL) returned non-NULL"), gtio_opendir(h, NULL) == NULL);
    expect_ret(W("gtio_pread_async(err=NULL)"),
               gtio_pread_async(h, buf, sizeof buf, 0, 0, &r.ucb, NULL), -1, NULL);
    expect_ret(W("gtio_cancel(err=NULL)"), gtio_cancel(h, &r.ucb, NULL), -1, NULL);
    expect_ret(W("gtio_close(err=NULL)"), gtio_close(h, NULL), -1, NULL);

    /* Nothing queued, nothing written. */
    expect_ret(W("gtio_poll after refused submissions"), drain_once(), 0, NULL);
    expect_ret(W("callback ran for a refused submission"), r.completions, 0, NULL);
    for (i = 0; i < (int)sizeof buf; i++)
        if (buf[i] != 0x5A) {
            fail(NULL, "%s", W("the buffer was written"));
            break;
        }
#undef W
}

/* Foreign and closed directory cursors. */
static void expect_dir_ebadf(GTIO_Dir *d, const char *name)
{
    char what[160];
    GTIO_Dirent *ent = calloc(1, sizeof *ent);
    GTIO_Error e;
    if (!ent) {
        fail(NULL, "out of memory");
        return;
    }
    snprintf(what, sizeof what, "%s cursor: gtio_readdir", name);
    reset(&e);
    expect_err(what, gtio_readdir(d, ent, &e), -1, &e, EBADF);
    expect_ret(what, gtio_readdir(d, ent, NULL), -1, NULL);
    expect_true("gtio_readdir of a bad cursor wrote the entry", ent->name[0] == '\0');
    snprintf(what, sizeof what, "%s cursor: gtio_closedir", name);
    reset(&e);
    expect_err(what, gtio_closedir(d, &e), -1, &e, EBADF);
    expect_ret(what, gtio_closedir(d, NULL), -1, NULL);
    free(ent);
}

static GTIO *open_ok(const char *what)
{
    GTIO_Error e;
    GTIO *h;
    reset(&e);
    h = gtio_open_uri(uri, NULL, &e);
    checks++;
    if (!h)
        fail(&e, "%s: gtio_open_uri(%s) failed", what, uri);
    return h;
}

/* ------------------------------------------------------------------------ */

static void test_null_pointers(GTIO *h)
{
    GTIO_Error e;
    unsigned char buf[16];
    struct req r;
    GTIO_Dir *d;
    gtio_usercomp_t ucp;
    static const char gto[] = "d4:infod6:lengthi1e4:name1:a12:piece lengthi16384e6:pieces0:ee";

    /* Opening. */
    reset(&e);
    expect_null("gtio_open_uri(uri=NULL)", gtio_open_uri(NULL, NULL, &e), &e, EINVAL);
    reset(&e);
    expect_null("gtio_open_uri(uri=NULL, cred given)", gtio_open_uri(NULL, "tok", &e), &e, EINVAL);
    expect_true("gtio_open_uri(NULL, NULL, NULL) returned non-NULL",
                gtio_open_uri(NULL, NULL, NULL) == NULL);
    reset(&e);
    expect_null("gtio_open_uri(non-UTF-8 uri)", gtio_open_uri("http://\xff\xfe/x", NULL, &e), &e,
                EINVAL);
    reset(&e);
    expect_null("gtio_open_gto(gto_buf=NULL)", gtio_open_gto(NULL, 100, NULL, &e), &e, EINVAL);
    reset(&e);
    expect_null("gtio_open_gto(gto_buf=NULL, size 0)", gtio_open_gto(NULL, 0, NULL, &e), &e,
                EINVAL);
    expect_true("gtio_open_gto(NULL, 1, NULL, NULL) returned non-NULL",
                gtio_open_gto(NULL, 1, NULL, NULL) == NULL);
    reset(&e);
    expect_null("gtio_open_gto(size SIZE_MAX)", gtio_open_gto(gto, SIZE_MAX, NULL, &e), &e, EINVAL);
    reset(&e);
    expect_null("gtio_open_gto(size INT64_MAX+1)",
                gtio_open_gto(gto, (size_t)INT64_MAX + 1, NULL, &e), &e, EINVAL);
    reset(&e);
    expect_null("gtio_open_gto(size 0)", gtio_open_gto(gto, 0, NULL, &e), &e, EINVAL);

    /* NULL handle: EBADF everywhere (checked in expect_ebadf_everywhere). */

    /* Buffers: NULL with count > 0 is EINVAL; NULL with count 0 reads nothing. */
    reset(&e);
    expect_err("gtio_read(buf=NULL, count=16)", gtio_read(h, NULL, 16, &e), -1, &e, EINVAL);
    expect_ret("gtio_read(buf=NULL, count=16, err=NULL)", gtio_read(h, NULL, 16, NULL), -1, NULL);
    reset(&e);
    expect_err("gtio_pread(buf=NULL, count=16)", gtio_pread(h, NULL, 16, 0, &e), -1, &e, EINVAL);
    expect_ret("gtio_pread(buf=NULL, count=16, err=NULL)", gtio_pread(h, NULL, 16, 0, NULL), -1,
               NULL);
    reset(&e);
    expect_ret("gtio_pread(buf=NULL, count=0)", gtio_pread(h, NULL, 0, 0, &e), 0, &e);
    reset(&e);
    expect_ret("gtio_read(buf=NULL, count=0)", gtio_read(h, NULL, 0, &e), 0, &e);
    reset(&e);
    expect_ret("gtio_lseek after gtio_read(count=0)", gtio_lseek(h, 0, SEEK_CUR, &e), 0, &e);

    req_init(&r, buf, sizeof buf, 0);
    reset(&e);
    expect_err("gtio_pread_async(buf=NULL, count=16)",
               gtio_pread_async(h, NULL, 16, 0, 0, &r.ucb, &e), -1, &e, EINVAL);
    reset(&e);
    expect_err("gtio_pread_async(ucb=NULL)", gtio_pread_async(h, buf, sizeof buf, 0, 0, NULL, &e),
               -1, &e, EINVAL);
    expect_ret("gtio_pread_async(ucb=NULL, err=NULL)",
               gtio_pread_async(h, buf, sizeof buf, 0, 0, NULL, NULL), -1, NULL);
    reset(&e);
    expect_err("gtio_cancel(ucb=NULL)", gtio_cancel(h, NULL, &e), -1, &e, EINVAL);
    expect_ret("gtio_cancel(ucb=NULL, err=NULL)", gtio_cancel(h, NULL, NULL), -1, NULL);
    expect_ret("gtio_poll after refused submissions", drain_once(), 0, NULL);
    expect_ret("callback ran for a refused submission", r.completions, 0, NULL);

    /* A zero-length async read with a NULL buffer completes with 0. */
    req_init(&r, NULL, 0, 0);
    reset(&e);
    expect_ret("gtio_pread_async(buf=NULL, count=0)",
               gtio_pread_async(h, NULL, 0, 0, 0, &r.ucb, &e), 0, &e);
    {
        struct req *rs[1] = { &r };
        if (wait_all("gtio_pread_async(buf=NULL, count=0)", rs, 1) == 0) {
            expect_ret("gtio_pread_async(buf=NULL, count=0): completions", r.completions, 1, NULL);
            expect_ret("gtio_pread_async(buf=NULL, count=0): ret", r.ucb.ret, 0, NULL);
        }
    }

    reset(&e);
    expect_err("gtio_get_file_list(fi=NULL)", gtio_get_file_list(h, NULL, &e), -1, &e, EINVAL);
    expect_ret("gtio_get_file_list(fi=NULL, err=NULL)", gtio_get_file_list(h, NULL, NULL), -1, NULL);

    reset(&e);
    d = gtio_opendir(h, &e);
    checks++;
    if (!d) {
        fail(&e, "gtio_opendir");
    } else {
        GTIO_Dirent *ent = calloc(1, sizeof *ent);
        reset(&e);
        expect_err("gtio_readdir(ent=NULL)", gtio_readdir(d, NULL, &e), -1, &e, EINVAL);
        expect_ret("gtio_readdir(ent=NULL, err=NULL)", gtio_readdir(d, NULL, NULL), -1, NULL);
        if (ent) {
            /* The refused calls did not advance the cursor. */
            reset(&e);
            expect_ret("gtio_readdir after ent=NULL", gtio_readdir(d, ent, &e), 0, &e);
            expect_ret("gtio_readdir: entry size", (int64_t)ent->size, stream_size, NULL);
            expect_ret("gtio_readdir at the end", gtio_readdir(d, ent, &e), 1, &e);
            free(ent);
        }
        reset(&e);
        expect_ret("gtio_closedir", gtio_closedir(d, &e), 0, &e);
        expect_dir_ebadf(d, "closed (double gtio_closedir)");
    }

    /* gtio_poll: NULL ucps with max > 0 is -1/EINVAL; with max <= 0 it is 0. */
    errno = 0;
    expect_ret("gtio_poll(NULL, 4)", gtio_poll(NULL, 4), -1, NULL);
    expect_ret("gtio_poll(NULL, 4): errno", errno, EINVAL, NULL);
    errno = 0;
    expect_ret("gtio_poll(NULL, INT32_MAX)", gtio_poll(NULL, INT32_MAX), -1, NULL);
    expect_ret("gtio_poll(NULL, INT32_MAX): errno", errno, EINVAL, NULL);
    expect_ret("gtio_poll(NULL, 0)", gtio_poll(NULL, 0), 0, NULL);
    expect_ret("gtio_poll(NULL, -1)", gtio_poll(NULL, -1), 0, NULL);
    expect_ret("gtio_poll(&ucp, -5)", gtio_poll(&ucp, -5), 0, NULL);

    /* Config and library. */
    gtio_config_default(NULL);
    reset(&e);
    expect_err("gtio_lib_init(NULL) while running", gtio_lib_init(NULL, &e), -1, &e, EBUSY);
    expect_ret("gtio_lib_init(NULL, NULL) while running", gtio_lib_init(NULL, NULL), -1, NULL);
    expect_true("gtio_version() is NULL or empty", gtio_version() && gtio_version()[0]);
}

static void test_file_lists(GTIO *h)
{
    GTIO_Error e;
    GTIO_FileInfo *fi = NULL;
    GTIO_FileInfo stack_list[3];
    GTIO_FileInfo *heap_list = calloc(3, sizeof *heap_list);
    int64_t n;

    memset(stack_list, 0x33, sizeof stack_list);
    reset(&e);
    n = gtio_get_file_list(h, &fi, &e);
    expect_ret("gtio_get_file_list", n, 1, &e);
    if (n == 1 && fi) {
        expect_ret("gtio_get_file_list: size", (int64_t)fi[0].size, stream_size, NULL);
        expect_ret("gtio_get_file_list: offset", (int64_t)fi[0].offset, 0, NULL);
        expect_true("gtio_get_file_list: name", fi[0].name && fi[0].name[0]);
    }
    /* Freed once, then again (ignored), with a lying count. */
    gtio_free_file_list(fi, n);
    gtio_free_file_list(fi, n);
    gtio_free_file_list(fi, 1000);
    /* Foreign lists are ignored and left intact. */
    gtio_free_file_list(stack_list, 3);
    gtio_free_file_list(stack_list + 1, -1);
    gtio_free_file_list(heap_list, 3);
    gtio_free_file_list(NULL, 0);
    gtio_free_file_list(NULL, 5);
    gtio_free_file_list(NULL, -1);
    gtio_free_file_list((GTIO_FileInfo *)1, 1);
    gtio_free_file_list((GTIO_FileInfo *)-1, INT64_MAX);
    {
        unsigned char want[sizeof stack_list];
        memset(want, 0x33, sizeof want);
        expect_true("gtio_free_file_list touched a foreign stack list",
                    memcmp(stack_list, want, sizeof want) == 0);
    }
    expect_true("gtio_free_file_list touched a foreign heap list",
                heap_list && heap_list[2].name == NULL && heap_list[2].size == 0);
    free(heap_list); /* still ours: a double free here would be the library's fault */

    /* Two lists at once, freed in reverse order. */
    {
        GTIO_FileInfo *a = NULL, *b = NULL;
        reset(&e);
        expect_ret("gtio_get_file_list (a)", gtio_get_file_list(h, &a, &e), 1, &e);
        reset(&e);
        expect_ret("gtio_get_file_list (b)", gtio_get_file_list(h, &b, &e), 1, &e);
        expect_true("two file lists share memory", a != b);
        gtio_free_file_list(b, 1);
        if (a)
            expect_true("freeing one list damaged the other", a[0].name && a[0].name[0] &&
                                                                  (int64_t)a[0].size == stream_size);
        gtio_free_file_list(a, 1);
        gtio_free_file_list(b, 1);
    }
}

static void test_counts_offsets_seek(GTIO *h)
{
    GTIO_Error e;
    unsigned char buf[64];
    struct req r;
    const size_t big[] = { SIZE_MAX, (size_t)INT64_MAX + 1, SIZE_MAX - 1 };
    const uint64_t far[] = { UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 63, (uint64_t)INT64_MAX,
                             (uint64_t)INT64_MAX + 1, 0 /* = size, set below */,
                             0 /* = size + 1 */ };
    uint64_t offs[sizeof far / sizeof far[0]];
    char what[160];
    unsigned i;

    memcpy(offs, far, sizeof far);
    offs[5] = (uint64_t)stream_size;
    offs[6] = (uint64_t)stream_size + 1;

    for (i = 0; i < sizeof big / sizeof big[0]; i++) {
        snprintf(what, sizeof what, "gtio_read(count=%zu)", big[i]);
        reset(&e);
        expect_err(what, gtio_read(h, buf, big[i], &e), -1, &e, EINVAL);
        snprintf(what, sizeof what, "gtio_pread(count=%zu)", big[i]);
        reset(&e);
        expect_err(what, gtio_pread(h, buf, big[i], 0, &e), -1, &e, EINVAL);
        reset(&e);
        expect_err(what, gtio_pread(h, buf, big[i], UINT64_MAX, &e), -1, &e, EINVAL);
        snprintf(what, sizeof what, "gtio_pread_async(count=%zu)", big[i]);
        req_init(&r, buf, big[i], 0);
        reset(&e);
        expect_err(what, gtio_pread_async(h, buf, big[i], 0, 0, &r.ucb, &e), -1, &e, EINVAL);
    }
    reset(&e);
    expect_ret("gtio_lseek after refused gtio_read", gtio_lseek(h, 0, SEEK_CUR, &e), 0, &e);

    /* Offsets at or past the end, up to UINT64_MAX: 0 bytes, not an error. */
    for (i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        snprintf(what, sizeof what, "gtio_pread(64 at %" PRIu64 ")", offs[i]);
        memset(buf, 0x5A, sizeof buf);
        reset(&e);
        expect_ret(what, gtio_pread(h, buf, sizeof buf, offs[i], &e), 0, &e);
        expect_true(what, buf[0] == 0x5A && buf[63] == 0x5A);
        snprintf(what, sizeof what, "gtio_prefetch(at %" PRIu64 ", UINT64_MAX)", offs[i]);
        reset(&e);
        expect_ret(what, gtio_prefetch(h, offs[i], UINT64_MAX, &e), 0, &e);
        snprintf(what, sizeof what, "gtio_pread_async(64 at %" PRIu64 ")", offs[i]);
        req_init(&r, buf, sizeof buf, offs[i]);
        reset(&e);
        expect_ret(what, gtio_pread_async(h, buf, sizeof buf, offs[i], 0, &r.ucb, &e), 0, &e);
        {
            struct req *rs[1] = { &r };
            if (wait_all(what, rs, 1) == 0) {
                expect_ret(what, r.completions, 1, NULL);
                expect_ret(what, r.ucb.ret, 0, NULL);
            }
        }
    }
    /* A read that ends exactly at the end, and one that would wrap around. */
    reset(&e);
    expect_ret("gtio_pread(64 ending at the end)",
               gtio_pread(h, buf, sizeof buf, (uint64_t)stream_size - 64, &e), 64, &e);
    expect_bytes("gtio_pread(64 ending at the end)", buf, (uint64_t)stream_size - 64, 64);
    reset(&e);
    expect_ret("gtio_pread(64 crossing the end)",
               gtio_pread(h, buf, sizeof buf, (uint64_t)stream_size - 10, &e), 10, &e);
    expect_bytes("gtio_pread(64 crossing the end)", buf, (uint64_t)stream_size - 10, 10);
    reset(&e);
    expect_ret("gtio_prefetch(0, UINT64_MAX)", gtio_prefetch(h, 0, UINT64_MAX, &e), 0, &e);
    reset(&e);
    expect_ret("gtio_prefetch(1, UINT64_MAX)", gtio_prefetch(h, 1, UINT64_MAX, &e), 0, &e);
    reset(&e);
    expect_ret("gtio_prefetch(0, 0)", gtio_prefetch(h, 0, 0, &e), 0, &e);

    /* lseek: overflow and negative results are EINVAL and leave the offset alone. */
    reset(&e);
    expect_ret("gtio_lseek(100, SEEK_SET)", gtio_lseek(h, 100, SEEK_SET, &e), 100, &e);
    reset(&e);
    expect_err("gtio_lseek(INT64_MAX, SEEK_END)", gtio_lseek(h, INT64_MAX, SEEK_END, &e), -1, &e,
               EINVAL);
    reset(&e);
    expect_err("gtio_lseek(-1, SEEK_SET)", gtio_lseek(h, -1, SEEK_SET, &e), -1, &e, EINVAL);
    reset(&e);
    expect_err("gtio_lseek(INT64_MIN, SEEK_SET)", gtio_lseek(h, INT64_MIN, SEEK_SET, &e), -1, &e,
               EINVAL);
    reset(&e);
    expect_err("gtio_lseek(INT64_MIN, SEEK_END)", gtio_lseek(h, INT64_MIN, SEEK_END, &e), -1, &e,
               EINVAL);
    reset(&e);
    expect_err("gtio_lseek(-101, SEEK_CUR)", gtio_lseek(h, -101, SEEK_CUR, &e), -1, &e, EINVAL);
    reset(&e);
    expect_err("gtio_lseek(0, whence=3)", gtio_lseek(h, 0, 3, &e), -1, &e, EINVAL);
    reset(&e);
    expect_err("gtio_lseek(0, whence=-1)", gtio_lseek(h, 0, -1, &e), -1, &e, EINVAL);
    expect_ret("gtio_lseek(INT64_MAX, SEEK_END, err=NULL)", gtio_lseek(h, INT64_MAX, SEEK_END, NULL),
               -1, NULL);
    reset(&e);
    expect_ret("gtio_lseek(0, SEEK_CUR) after refused seeks", gtio_lseek(h, 0, SEEK_CUR, &e), 100,
               &e);
    /* Far past the end is allowed; reads there return 0; one more overflows. */
    reset(&e);
    expect_ret("gtio_lseek(INT64_MAX, SEEK_SET)", gtio_lseek(h, INT64_MAX, SEEK_SET, &e), INT64_MAX,
               &e);
    reset(&e);
    expect_ret("gtio_read at INT64_MAX", gtio_read(h, buf, sizeof buf, &e), 0, &e);
    reset(&e);
    expect_err("gtio_lseek(1, SEEK_CUR) at INT64_MAX", gtio_lseek(h, 1, SEEK_CUR, &e), -1, &e,
               EINVAL);
    reset(&e);
    expect_ret("gtio_lseek(0, SEEK_CUR) at INT64_MAX", gtio_lseek(h, 0, SEEK_CUR, &e), INT64_MAX,
               &e);
    reset(&e);
    expect_ret("gtio_lseek(0, SEEK_END)", gtio_lseek(h, 0, SEEK_END, &e), stream_size, &e);
    reset(&e);
    expect_ret("gtio_lseek(INT64_MAX - size, SEEK_END)",
               gtio_lseek(h, INT64_MAX - stream_size, SEEK_END, &e), INT64_MAX, &e);
    reset(&e);
    expect_ret("gtio_lseek(-size, SEEK_END)", gtio_lseek(h, -stream_size, SEEK_END, &e), 0, &e);

    /* Unknown flags: refused, nothing queued. */
    {
        const uint32_t bad[] = { 2u, 4u, 0x80000000u, UINT32_MAX, GTIO_READ_BACKGROUND | 2u };
        for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
            snprintf(what, sizeof what, "gtio_pread_async(flags=%#" PRIx32 ")", bad[i]);
            req_init(&r, buf, sizeof buf, 0);
            reset(&e);
            expect_err(what, gtio_pread_async(h, buf, sizeof buf, 0, bad[i], &r.ucb, &e), -1, &e,
                       EINVAL);
        }
        expect_ret("gtio_poll after refused flags", drain_once(), 0, NULL);
    }
}

/* The same ucb submitted twice while its first read is pending: the second is
 * EINVAL and nothing of it is queued; the first completes once with its bytes.
 * Run on uncached ranges first thing, so the first read is surely pending; a
 * first read that won the race anyway (completed before the second
 * submission) is retried at another offset. */
static void test_duplicate_ucb(GTIO *h)
{
    const size_t len = 1u << 20;
    unsigned char *buf = malloc(len), *buf2 = malloc(len);
    int attempt, got_einval = 0;
    if (!buf || !buf2) {
        fail(NULL, "out of memory");
        free(buf);
        free(buf2);
        return;
    }
    for (attempt = 0; attempt < 4 && !got_einval; attempt++) {
        uint64_t off = (uint64_t)stream_size - len - (uint64_t)attempt * len;
        struct req r, *rs[1] = { &r };
        GTIO_Error e;
        int rc;
        if ((int64_t)off < 0)
            break;
        req_init(&r, buf, len, off);
        reset(&e);
        rc = gtio_pread_async(h, buf, len, off, 0, &r.ucb, &e);
        expect_ret("gtio_pread_async (first submission of a ucb)", rc, 0, &e);
        if (rc != 0)
            break;
        reset(&e);
        rc = gtio_pread_async(h, buf2, 16, 0, 0, &r.ucb, &e);
        if (rc == -1) {
            got_einval = 1;
            expect_err("gtio_pread_async (same ucb while pending)", rc, -1, &e, EINVAL);
        }
        if (wait_all("duplicate ucb", rs, 1) == 0) {
            /* Let a wrongly accepted second read complete too, then count. */
            if (rc == 0) {
                int64_t deadline = now_ms() + WAIT_MS;
                while (r.completions < 2 && now_ms() < deadline) {
                    struct timespec ts = { 0, 5 * 1000 * 1000 };
                    drain_once();
                    nanosleep(&ts, NULL);
                }
                expect_ret("duplicate ucb accepted after the first completed: completions",
                           r.completions, 2, NULL);
                continue;
            }
            expect_read_ok("duplicate ucb: the first read", &r);
        }
    }
    expect_true("the same ucb submitted twice while pending was never refused with EINVAL",
                got_einval);
    free(buf);
    free(buf2);
}

/* ------------------------------------------------------------------------ */
/* Callbacks that call back into gtio. */

static GTIO *cb_handle;
static unsigned char cb_sync_buf[70000];
static int64_t cb_sync_ret = INT64_MIN;
static GTIO_Error cb_sync_err;
static struct req cb_inner;
static unsigned char cb_inner_buf[50000];
static int cb_inner_rc = INT32_MIN;
static GTIO_Error cb_inner_err;
static int cb_nested_polled = -2;
static int cb_depth, cb_max_depth;

/* From a callback: a synchronous read (blocks on the network) and an async one. */
static void then_read_more(struct req *r)
{
    (void)r;
    reset(&cb_sync_err);
    cb_sync_ret = gtio_pread(cb_handle, cb_sync_buf, sizeof cb_sync_buf, 3000001, &cb_sync_err);
    req_init(&cb_inner, cb_inner_buf, sizeof cb_inner_buf, 2500003);
    reset(&cb_inner_err);
    cb_inner_rc = gtio_pread_async(cb_handle, cb_inner_buf, sizeof cb_inner_buf, 2500003, 0,
                                   &cb_inner.ucb, &cb_inner_err);
}

/* From a callback: gtio_poll, running what it returns (nested callbacks). */
static void then_poll(struct req *r)
{
    gtio_usercomp_t ucps[8];
    int n, i;
    (void)r;
    cb_depth++;
    if (cb_depth > cb_max_depth)
        cb_max_depth = cb_depth;
    n = gtio_poll(ucps, 8);
    if (cb_nested_polled < 0)
        cb_nested_polled = 0;
    if (n < 0)
        cb_nested_polled = -1;
    for (i = 0; i < n; i++) {
        cb_nested_polled++;
        ucps[i].ucp_fun(ucps[i].ucp_res, ucps[i].ucp_arg);
    }
    cb_depth--;
}

static void test_callbacks(GTIO *h)
{
    struct req outer, *rs[2];
    unsigned char outer_buf[30000];
    GTIO_Error e;
    int i;

    cb_handle = h;
    /* 1: a callback that reads synchronously and submits another async read. */
    req_init(&outer, outer_buf, sizeof outer_buf, 1000003);
    outer.then = then_read_more;
    reset(&e);
    expect_ret("gtio_pread_async (callback reads)",
               gtio_pread_async(h, outer_buf, sizeof outer_buf, outer.off, 0, &outer.ucb, &e), 0,
               &e);
    rs[0] = &outer;
    if (wait_all("callback reads", rs, 1) == 0) {
        expect_read_ok("callback reads: outer read", &outer);
        expect_ret("gtio_pread from a callback", cb_sync_ret, (int64_t)sizeof cb_sync_buf,
                   &cb_sync_err);
        if (cb_sync_ret > 0)
            expect_bytes("gtio_pread from a callback", cb_sync_buf, 3000001,
                         (uint64_t)cb_sync_ret);
        expect_ret("gtio_pread_async from a callback", cb_inner_rc, 0, &cb_inner_err);
        if (cb_inner_rc == 0) {
            rs[0] = &cb_inner;
            if (wait_all("gtio_pread_async from a callback", rs, 1) == 0)
                expect_read_ok("gtio_pread_async from a callback", &cb_inner);
        }
    }

    /* 2: callbacks that call gtio_poll (and so run each other, nested). */
    {
        enum { N = 6 };
        static unsigned char bufs[N][20000];
        struct req reqs[N], *all[N];
        int total;
        cb_nested_polled = -2;
        cb_max_depth = 0;
        for (i = 0; i < N; i++) {
            uint64_t off = 4000000 + (uint64_t)i * 150001;
            req_init(&reqs[i], bufs[i], sizeof bufs[i], off);
            reqs[i].then = then_poll;
            all[i] = &reqs[i];
            reset(&e);
            expect_ret("gtio_pread_async (callback polls)",
                       gtio_pread_async(h, bufs[i], sizeof bufs[i], off, GTIO_READ_BACKGROUND,
                                        &reqs[i].ucb, &e),
                       0, &e);
        }
        if (wait_all("callbacks that poll", all, N) == 0) {
            total = 0;
            for (i = 0; i < N; i++) {
                char what[80];
                snprintf(what, sizeof what, "callback polls: read %d", i);
                expect_read_ok(what, &reqs[i]);
                total += reqs[i].completions;
            }
            expect_ret("callbacks that poll: total completions", total, N, NULL);
            expect_true("gtio_poll from a callback failed", cb_nested_polled >= 0);
        }
        expect_ret("gtio_poll after callbacks that poll", drain_once(), 0, NULL);
    }
}

/* ------------------------------------------------------------------------ */
/* A thread that submits async reads and exits without ever polling. Its
 * buffers are static: the library may write them until the reads finish. */

enum { ORPHANS = 8, ORPHAN_LEN = 40000 };
static unsigned char orphan_bufs[ORPHANS][ORPHAN_LEN];
static struct req orphan_reqs[ORPHANS];
static int orphan_submitted;

static void *orphan_thread(void *arg)
{
    GTIO *h = arg;
    int i;
    for (i = 0; i < ORPHANS; i++) {
        GTIO_Error e;
        uint64_t off = 200000 + (uint64_t)i * 333331;
        req_init(&orphan_reqs[i], orphan_bufs[i], ORPHAN_LEN, off);
        reset(&e);
        if (gtio_pread_async(h, orphan_bufs[i], ORPHAN_LEN, off, i & 1 ? GTIO_READ_BACKGROUND : 0,
                             &orphan_reqs[i].ucb, &e) == 0)
            orphan_submitted++;
        else
            fail(&e, "orphan thread: gtio_pread_async %d", i);
    }
    return NULL; /* no gtio_poll: the completions are never taken */
}

static void test_orphan_thread(GTIO *h)
{
    pthread_t t;
    GTIO_Error e;
    unsigned char buf[1000];
    int i;
    if (pthread_create(&t, NULL, orphan_thread, h) != 0) {
        fail(NULL, "pthread_create failed");
        return;
    }
    pthread_join(t, NULL);
    expect_ret("orphan thread: submissions", orphan_submitted, ORPHANS, NULL);
    /* The main thread carries on: sync reads, async reads, its own ring only. */
    for (i = 0; i < 20; i++) {
        uint64_t off = (uint64_t)i * 250007;
        reset(&e);
        expect_ret("gtio_pread after the orphan thread", gtio_pread(h, buf, sizeof buf, off, &e),
                   (int64_t)sizeof buf, &e);
        expect_bytes("gtio_pread after the orphan thread", buf, off, sizeof buf);
    }
    {
        struct req r, *rs[1] = { &r };
        req_init(&r, buf, sizeof buf, 777);
        reset(&e);
        expect_ret("gtio_pread_async after the orphan thread",
                   gtio_pread_async(h, buf, sizeof buf, 777, 0, &r.ucb, &e), 0, &e);
        if (wait_all("gtio_pread_async after the orphan thread", rs, 1) == 0)
            expect_read_ok("gtio_pread_async after the orphan thread", &r);
        /* Give the orphans time to finish, then check no completion leaked here. */
        {
            struct timespec ts = { 0, 200 * 1000 * 1000 };
            nanosleep(&ts, NULL);
        }
        expect_ret("orphan completions showed up on the main thread's ring", drain_once(), 0,
                   NULL);
        expect_ret("the main thread's callback ran again", r.completions, 1, NULL);
    }
    for (i = 0; i < ORPHANS; i++)
        expect_ret("an orphan's callback ran (nobody polled its ring)",
                   orphan_reqs[i].completions, 0, NULL);
}

/* ------------------------------------------------------------------------ */

static void test_lib_fini(GTIO *h_closed)
{
    GTIO_Error e;
    GTIO *h1 = open_ok("before gtio_lib_fini (1)"), *h2 = open_ok("before gtio_lib_fini (2)");
    GTIO_Dir *d = NULL;
    static unsigned char pend_buf[1u << 20];
    struct req pend, *rs[1] = { &pend };
    unsigned char buf[512];
    int pend_rc;

    if (!h1 || !h2) {
        if (h1)
            gtio_close(h1, NULL);
        if (h2)
            gtio_close(h2, NULL);
        return;
    }
    reset(&e);
    d = gtio_opendir(h1, &e);
    expect_true("gtio_opendir before gtio_lib_fini", d != NULL);
    /* A read possibly still pending at fini: it completes once, bytes or -ECANCELED. */
    req_init(&pend, pend_buf, sizeof pend_buf, 123457);
    reset(&e);
    pend_rc = gtio_pread_async(h2, pend_buf, sizeof pend_buf, pend.off, GTIO_READ_BACKGROUND,
                               &pend.ucb, &e);
    expect_ret("gtio_pread_async before gtio_lib_fini", pend_rc, 0, &e);

    reset(&e);
    expect_ret("gtio_lib_fini with handles open", gtio_lib_fini(&e), 0, &e);
    if (pend_rc == 0 && wait_all("the read pending at gtio_lib_fini", rs, 1) == 0) {
        checks++;
        if (pend.completions != 1)
            fail(NULL, "the read pending at gtio_lib_fini completed %d times", pend.completions);
        else if (pend.ucb.ret == -ECANCELED)
            ;
        else if (pend.ucb.ret == want_len(&pend))
            expect_bytes("the read pending at gtio_lib_fini", pend_buf, pend.off,
                         (uint64_t)pend.ucb.ret);
        else
            fail(NULL, "the read pending at gtio_lib_fini: ret %" PRId64 ", expected %" PRId64
                       " or -ECANCELED",
                 pend.ucb.ret, want_len(&pend));
    }
    expect_ebadf_everywhere(h1, "pre-fini (1)");
    expect_ebadf_everywhere(h2, "pre-fini (2)");
    expect_ebadf_everywhere(h_closed, "closed, pre-fini");
    if (d)
        expect_dir_ebadf(d, "pre-fini");
    /* The library stopped: fini again is 0, init works once, then EBUSY. */
    reset(&e);
    expect_ret("gtio_lib_fini again", gtio_lib_fini(&e), 0, &e);
    expect_ret("gtio_lib_fini(err=NULL)", gtio_lib_fini(NULL), 0, NULL);
    reset(&e);
    expect_ret("gtio_lib_init(NULL) after gtio_lib_fini", gtio_lib_init(NULL, &e), 0, &e);
    reset(&e);
    expect_err("gtio_lib_init(NULL) twice", gtio_lib_init(NULL, &e), -1, &e, EBUSY);
    expect_ebadf_everywhere(h1, "pre-fini, after a new gtio_lib_init");
    reset(&e);
    expect_ret("gtio_lib_fini after gtio_lib_init", gtio_lib_fini(&e), 0, &e);

    /* A new open starts the library again with the defaults and works. */
    {
        GTIO *h3 = open_ok("after gtio_lib_fini");
        if (h3) {
            reset(&e);
            expect_ret("gtio_size after gtio_lib_fini", gtio_size(h3, &e), stream_size, &e);
            reset(&e);
            expect_ret("gtio_pread after gtio_lib_fini", gtio_pread(h3, buf, sizeof buf, 99991, &e),
                       (int64_t)sizeof buf, &e);
            expect_bytes("gtio_pread after gtio_lib_fini", buf, 99991, sizeof buf);
            {
                struct req r, *r1[1] = { &r };
                req_init(&r, buf, sizeof buf, 4444444);
                reset(&e);
                expect_ret("gtio_pread_async after gtio_lib_fini",
                           gtio_pread_async(h3, buf, sizeof buf, r.off, 0, &r.ucb, &e), 0, &e);
                if (wait_all("gtio_pread_async after gtio_lib_fini", r1, 1) == 0)
                    expect_read_ok("gtio_pread_async after gtio_lib_fini", &r);
            }
            expect_true("a new handle equals a pre-fini one", h3 != h1 && h3 != h2);
            reset(&e);
            expect_ret("gtio_close after gtio_lib_fini", gtio_close(h3, &e), 0, &e);
            expect_ebadf_everywhere(h3, "closed, post-fini");
        }
    }
}

int main(int argc, char **argv)
{
    GTIO *h;
    GTIO_Error e;
    int stack_var = 0x1234;
    const char *ca;

    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: " PROG " <uri> [<local-copy>]\n");
        return 2;
    }
    uri = argv[1];
    if (argc == 3 && !(local = read_local(argv[2], &local_len)))
        return 2;

    ca = getenv("GTIO_CA_BUNDLE");
    if (ca) {
        GTIO_Config cfg;
        gtio_config_default(&cfg);
        cfg.ca_bundle = ca;
        reset(&e);
        if (gtio_lib_init(&cfg, &e) != 0) {
            fail(&e, "gtio_lib_init");
            free(local);
            return 1;
        }
    }

    h = open_ok("main handle");
    if (!h) {
        free(local);
        return 1;
    }
    reset(&e);
    stream_size = gtio_size(h, &e);
    checks++;
    if (stream_size < 8 * 1024 * 1024 / 2 || (local && (uint64_t)stream_size != local_len)) {
        fail(&e, "gtio_size: %" PRId64 " (need >= 4 MiB%s)", stream_size,
             local ? " and the local copy's size" : "");
        gtio_close(h, NULL);
        free(local);
        return 1;
    }

    test_duplicate_ucb(h); /* first: needs uncached ranges */
    test_null_pointers(h);
    test_file_lists(h);
    test_counts_offsets_seek(h);
    test_callbacks(h);
    test_orphan_thread(h);

    /* Foreign handles. */
    expect_ebadf_everywhere(NULL, "NULL");
    expect_ebadf_everywhere((GTIO *)&stack_var, "stack variable");
    expect_ebadf_everywhere((GTIO *)1, "(GTIO *)1");
    expect_ebadf_everywhere((GTIO *)-1, "(GTIO *)-1");
    expect_true("a stack variable used as a handle was written", stack_var == 0x1234);
    expect_dir_ebadf(NULL, "NULL");
    expect_dir_ebadf((GTIO_Dir *)&stack_var, "stack variable");
    expect_dir_ebadf((GTIO_Dir *)1, "(GTIO_Dir *)1");
    expect_dir_ebadf((GTIO_Dir *)-1, "(GTIO_Dir *)-1");
    expect_dir_ebadf((GTIO_Dir *)h, "a dataset handle as");

    /* Closed handle; double close. */
    reset(&e);
    expect_ret("gtio_close", gtio_close(h, &e), 0, &e);
    reset(&e);
    expect_err("double gtio_close", gtio_close(h, &e), -1, &e, EBADF);
    expect_ebadf_everywhere(h, "closed");

    test_lib_fini(h);

    /* The orphans' reads are finished or cancelled (their handle is closed and
     * the library was stopped), so their buffers are free again. */
    reset(&e);
    expect_ret("final gtio_lib_fini", gtio_lib_fini(&e), 0, &e);
    free(local);
    if (failures) {
        fprintf(stderr, PROG ": %d of %d checks FAILED\n", failures, checks);
        return 1;
    }
    printf(PROG ": %d checks passed\n", checks);
    return 0;
}
