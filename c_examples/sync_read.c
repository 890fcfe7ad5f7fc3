/* sync_read: synchronous reads through the gtio C ABI, checked against a local copy.
 *
 *   sync_read <uri> <local-copy>
 *
 * Opens <uri>, checks gtio_size against the local file, reads the whole stream
 * with gtio_read in odd-sized chunks, does 200 random gtio_pread calls (some past
 * the end), checks gtio_lseek (SEEK_SET/CUR/END), the file list, and error paths
 * (bad whence, NULL buffer, closed handle). Prints one summary line; exits 0 only
 * if everything matched.
 *
 * Environment: GTIO_CA_BUNDLE=<pem> trusts an extra CA (for https test servers).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <gtio.h>

#define PROG "sync_read"
#define CHUNK 65537u
#define N_PREADS 200
#define MAX_PRINTED_FAILURES 20

static int failures;

/* Print one failure: what was checked, expected vs got, and the library's error. */
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

static unsigned char *read_local(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    long n;
    if (!f) {
        fprintf(stderr, PROG ": cannot open local copy %s: %s\n", path, strerror(errno));
        return NULL;
    }
    if (fseek(f, 0, SEEK_END) != 0 || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET) != 0) {
        fprintf(stderr, PROG ": cannot size %s: %s\n", path, strerror(errno));
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
    *len = (size_t)n;
    return buf;
}

/* Fixed-seed LCG (Knuth MMIX constants); the upper bits are used. */
static uint64_t lcg_state = 0x2545F4914F6CDD1DULL;
static uint64_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return lcg_state >> 17;
}

/* Set up an extra trusted CA from GTIO_CA_BUNDLE, if given. 0 ok, -1 failed. */
static int maybe_init(void)
{
    const char *ca = getenv("GTIO_CA_BUNDLE");
    GTIO_Config cfg;
    GTIO_Error err;
    if (!ca || !*ca)
        return 0;
    memset(&err, 0, sizeof err);
    gtio_config_default(&cfg);
    cfg.ca_bundle = ca;
    if (gtio_lib_init(&cfg, &err) != 0) {
        fail(&err, "gtio_lib_init with ca_bundle=%s: expected 0, got -1", ca);
        return -1;
    }
    return 0;
}

/* Compare a read result against the local copy at `off`. */
static void check_bytes(const char *what, const unsigned char *got, const unsigned char *local,
                        size_t local_len, uint64_t off, int64_t n)
{
    int64_t i;
    if (n == 0)
        return;
    if (off > local_len || (uint64_t)n > local_len - off) {
        fail(NULL, "%s: %" PRId64 " bytes at offset %" PRIu64 " run past the local size %zu", what,
             n, off, local_len);
        return;
    }
    if (n > 0 && memcmp(got, local + off, (size_t)n) != 0) {
        for (i = 0; i < n && got[i] == local[off + (uint64_t)i]; i++)
            ;
        fail(NULL, "%s: byte mismatch at stream offset %" PRIu64 ": expected 0x%02x, got 0x%02x",
             what, off + (uint64_t)i, local[off + (uint64_t)i], got[i]);
    }
}

static uint64_t expected_len(uint64_t size, uint64_t off, uint64_t count)
{
    if (off >= size)
        return 0;
    return count < size - off ? count : size - off;
}

int main(int argc, char **argv)
{
    const char *uri, *local_path;
    unsigned char *local = NULL, *buf = NULL;
    size_t local_len = 0;
    GTIO *h = NULL;
    GTIO_Error err;
    int64_t size = 0, r, total = 0, nreads = 0;
    uint64_t pread_bytes = 0;
    int i;

    if (argc != 3) {
        fprintf(stderr, "usage: %s <uri> <local-copy>\n", argv[0]);
        return 2;
    }
    uri = argv[1];
    local_path = argv[2];
    if (!(local = read_local(local_path, &local_len)))
        return 1;
    if (maybe_init() != 0)
        goto out;
    if (!gtio_version() || !*gtio_version())
        fail(NULL, "gtio_version: expected a non-empty string, got %s",
             gtio_version() ? "\"\"" : "NULL");

    memset(&err, 0, sizeof err);
    h = gtio_open_uri(uri, NULL, &err);
    if (!h) {
        fail(&err, "gtio_open_uri(%s): expected a handle, got NULL", uri);
        goto out;
    }

    /* size */
    size = gtio_size(h, &err);
    if (size != (int64_t)local_len) {
        fail(&err, "gtio_size: expected %zu, got %" PRId64, local_len, size);
        goto out;
    }
    if (size < 65536) {
        fail(NULL, "the test file must be at least 64 KiB, got %" PRId64 " bytes", size);
        goto out;
    }

    buf = malloc(CHUNK * 8);
    if (!buf) {
        fail(NULL, "out of memory");
        goto out;
    }

    /* prefetch is a hint: it must not fail on a valid range */
    if (gtio_prefetch(h, 0, (uint64_t)size / 2, &err) != 0)
        fail(&err, "gtio_prefetch(0, %" PRId64 "): expected 0", size / 2);

    /* whole stream, sequentially, in odd-sized chunks */
    for (;;) {
        uint64_t want = expected_len((uint64_t)size, (uint64_t)total, CHUNK);
        memset(&err, 0, sizeof err);
        r = gtio_read(h, buf, CHUNK, &err);
        if (r < 0) {
            fail(&err, "gtio_read at offset %" PRId64 ": expected %" PRIu64 " bytes, got %" PRId64,
                 total, want, r);
            goto out;
        }
        if ((uint64_t)r != want) {
            fail(&err, "gtio_read at offset %" PRId64 ": expected %" PRIu64
                       " bytes (short counts only at the end), got %" PRId64,
                 total, want, r);
            goto out;
        }
        if (r == 0)
            break;
        check_bytes("gtio_read", buf, local, local_len, (uint64_t)total, r);
        total += r;
        nreads++;
    }
    if (total != size)
        fail(NULL, "gtio_read total: expected %" PRId64 " bytes, got %" PRId64, size, total);
    r = gtio_read(h, buf, CHUNK, &err);
    if (r != 0)
        fail(&err, "gtio_read at end of stream again: expected 0, got %" PRId64, r);

    /* random preads, some past the end, some of length 0 */
    for (i = 0; i < N_PREADS; i++) {
        uint64_t off, count, want;
        switch (i % 10) {
        case 0: off = (uint64_t)size + lcg() % 100000; break; /* past the end */
        case 1: off = (uint64_t)size - lcg() % 1000 - 1; break; /* straddles the end */
        case 2: off = (uint64_t)size; break;                    /* exactly at the end */
        default: off = lcg() % (uint64_t)size; break;
        }
        count = (i % 17 == 5) ? 0 : lcg() % (CHUNK * 8 + 1);
        want = expected_len((uint64_t)size, off, count);
        memset(&err, 0, sizeof err);
        r = gtio_pread(h, buf, (size_t)count, off, &err);
        if (r < 0 || (uint64_t)r != want) {
            fail(&err, "gtio_pread #%d (count %" PRIu64 ", offset %" PRIu64 "): expected %" PRIu64
                       ", got %" PRId64,
                 i, count, off, want, r);
            continue;
        }
        check_bytes("gtio_pread", buf, local, local_len, off, r);
        pread_bytes += (uint64_t)r;
    }

    /* lseek: SET / CUR / END, and reads at the new offsets */
    {
        struct {
            int64_t base; /* SEEK_SET here first (for SEEK_CUR), -1: no */
            int64_t off;
            int whence;
            int64_t expect;
        } seeks[] = {
            { -1, 1000, SEEK_SET, 1000 },
            { 1000, 0, SEEK_CUR, 1000 },
            { 1000, 4096, SEEK_CUR, 5096 },
            { 5096, -96, SEEK_CUR, 5000 },
            { -1, 0, SEEK_END, 0 },  /* expect filled below: size */
            { -1, -7, SEEK_END, 0 }, /* size - 7 */
            { -1, 12345, SEEK_SET, 12345 },
        };
        size_t k;
        seeks[4].expect = size;
        seeks[5].expect = size - 7;
        for (k = 0; k < sizeof seeks / sizeof seeks[0]; k++) {
            uint64_t want;
            memset(&err, 0, sizeof err);
            if (seeks[k].base >= 0 && (r = gtio_lseek(h, seeks[k].base, SEEK_SET, &err)) != seeks[k].base) {
                fail(&err, "gtio_lseek(%" PRId64 ", SEEK_SET): expected %" PRId64 ", got %" PRId64,
                     seeks[k].base, seeks[k].base, r);
                continue;
            }
            r = gtio_lseek(h, seeks[k].off, seeks[k].whence, &err);
            if (r != seeks[k].expect) {
                fail(&err, "gtio_lseek(%" PRId64 ", %s) from %" PRId64 ": expected %" PRId64 ", got %" PRId64,
                     seeks[k].off,
                     seeks[k].whence == SEEK_SET ? "SEEK_SET"
                     : seeks[k].whence == SEEK_CUR ? "SEEK_CUR" : "SEEK_END",
                     seeks[k].base, seeks[k].expect, r);
                continue;
            }
            want = expected_len((uint64_t)size, (uint64_t)r, 777);
            r = gtio_read(h, buf, 777, &err);
            if (r < 0 || (uint64_t)r != want) {
                fail(&err, "gtio_read after lseek to %" PRId64 ": expected %" PRIu64 ", got %" PRId64,
                     seeks[k].expect, want, r);
                continue;
            }
            check_bytes("gtio_read after gtio_lseek", buf, local, local_len,
                        (uint64_t)seeks[k].expect, r);
            /* read advanced the offset: SEEK_CUR 0 tells where we are */
            r = gtio_lseek(h, 0, SEEK_CUR, &err);
            if (r != seeks[k].expect + (int64_t)want)
                fail(&err, "gtio_lseek(0, SEEK_CUR) after a read: expected %" PRId64 ", got %" PRId64,
                     seeks[k].expect + (int64_t)want, r);
        }
        /* past the end is allowed (POSIX); reads there give 0 */
        r = gtio_lseek(h, size + 100, SEEK_SET, &err);
        if (r != size + 100)
            fail(&err, "gtio_lseek(size+100, SEEK_SET): expected %" PRId64 ", got %" PRId64,
                 size + 100, r);
        else if ((r = gtio_read(h, buf, 10, &err)) != 0)
            fail(&err, "gtio_read past the end: expected 0, got %" PRId64, r);
    }

    /* error paths */
    memset(&err, 0, sizeof err);
    r = gtio_lseek(h, 0, 42, &err);
    if (r != -1 || err.code != EINVAL)
        fail(&err, "gtio_lseek with bad whence 42: expected -1/EINVAL, got %" PRId64 "/%d", r,
             (int)err.code);
    memset(&err, 0, sizeof err);
    r = gtio_lseek(h, -1, SEEK_SET, &err);
    if (r != -1 || err.code != EINVAL)
        fail(&err, "gtio_lseek(-1, SEEK_SET): expected -1/EINVAL, got %" PRId64 "/%d", r,
             (int)err.code);
    memset(&err, 0, sizeof err);
    r = gtio_pread(h, NULL, 10, 0, &err);
    if (r != -1 || err.code != EINVAL)
        fail(&err, "gtio_pread with NULL buf: expected -1/EINVAL, got %" PRId64 "/%d", r,
             (int)err.code);
    memset(&err, 0, sizeof err);
    r = gtio_read(h, NULL, 10, &err);
    if (r != -1 || err.code != EINVAL)
        fail(&err, "gtio_read with NULL buf: expected -1/EINVAL, got %" PRId64 "/%d", r,
             (int)err.code);
    /* err may be NULL everywhere */
    if ((r = gtio_lseek(h, 0, 42, NULL)) != -1)
        fail(NULL, "gtio_lseek with bad whence and err=NULL: expected -1, got %" PRId64, r);
    if ((r = gtio_pread(h, buf, 16, 0, NULL)) != (size > 16 ? 16 : size))
        fail(NULL, "gtio_pread with err=NULL: expected %d, got %" PRId64, (int)(size > 16 ? 16 : size), r);
    memset(&err, 0, sizeof err);
    if (gtio_size(NULL, &err) != -1 || err.code == 0)
        fail(&err, "gtio_size(NULL): expected -1 with an error code");

    /* the file list covers the stream, and readdir agrees with it */
    {
        GTIO_FileInfo *fi = NULL;
        GTIO_Dir *d;
        GTIO_Dirent *ent;
        int64_t n, k;
        uint64_t sum = 0;
        memset(&err, 0, sizeof err);
        n = gtio_get_file_list(h, &fi, &err);
        if (n < 1) {
            fail(&err, "gtio_get_file_list: expected >= 1 file, got %" PRId64, n);
        } else {
            for (k = 0; k < n; k++) {
                if (fi[k].offset != sum)
                    fail(NULL, "file %" PRId64 " (%s): expected offset %" PRIu64 ", got %" PRIu64, k,
                         fi[k].name ? fi[k].name : "(null)", sum, fi[k].offset);
                if (!fi[k].name)
                    fail(NULL, "file %" PRId64 ": name is NULL", k);
                sum += fi[k].size;
            }
            if (sum != (uint64_t)size)
                fail(NULL, "file list sizes: expected a total of %" PRId64 ", got %" PRIu64, size, sum);
            ent = malloc(sizeof *ent);
            d = gtio_opendir(h, &err);
            if (!d || !ent) {
                fail(&err, "gtio_opendir: expected a cursor, got NULL");
            } else {
                int rc;
                for (k = 0; (rc = gtio_readdir(d, ent, &err)) == 0; k++) {
                    if (k >= n) {
                        fail(NULL, "gtio_readdir: more entries than gtio_get_file_list's %" PRId64, n);
                        break;
                    }
                    if (!fi[k].name || strcmp(ent->name, fi[k].name) != 0 ||
                        ent->offset != fi[k].offset || ent->size != fi[k].size)
                        fail(NULL, "gtio_readdir entry %" PRId64 ": expected %s@%" PRIu64 "+%" PRIu64
                                   ", got %s@%" PRIu64 "+%" PRIu64,
                             k, fi[k].name ? fi[k].name : "(null)", fi[k].offset, fi[k].size,
                             ent->name, ent->offset, ent->size);
                }
                if (rc == -1)
                    fail(&err, "gtio_readdir: expected 1 at the end, got -1");
                else if (rc == 1 && k != n)
                    fail(NULL, "gtio_readdir: expected %" PRId64 " entries, got %" PRId64, n, k);
                if (gtio_closedir(d, &err) != 0)
                    fail(&err, "gtio_closedir: expected 0");
            }
            free(ent);
            gtio_free_file_list(fi, n);
        }
    }

    memset(&err, 0, sizeof err);
    if (gtio_close(h, &err) != 0)
        fail(&err, "gtio_close: expected 0, got -1");
    /* a closed handle is EBADF, never undefined behaviour */
    memset(&err, 0, sizeof err);
    r = gtio_size(h, &err);
    if (r != -1 || err.code != EBADF)
        fail(&err, "gtio_size on a closed handle: expected -1/EBADF, got %" PRId64 "/%d", r,
             (int)err.code);
    memset(&err, 0, sizeof err);
    if (gtio_close(h, &err) != -1 || err.code != EBADF)
        fail(&err, "gtio_close twice: expected -1/EBADF, got code %d", (int)err.code);
    h = NULL;

out:
    if (h)
        gtio_close(h, NULL);
    free(buf);
    free(local);
    if (failures) {
        fprintf(stderr, PROG ": FAILED: %d check(s) failed (uri %s)\n", failures, uri);
        return 1;
    }
    printf(PROG ": OK: %s: size %" PRId64 ", %" PRId64 " sequential reads of %u, %d preads (%" PRIu64
           " bytes), lseek and error paths checked (gtio %s)\n",
           uri, size, nreads, CHUNK, N_PREADS, pread_bytes, gtio_version());
    return 0;
}
