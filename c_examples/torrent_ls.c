/* torrent_ls: list a torrent's files and print a byte range of one of them.
 *
 *   torrent_ls <torrent-path-or-uri> <file-name> <offset> <len>
 *
 * A URI (anything with "://": http://, https://, file://) is opened with
 * gtio_open_uri; anything else is a local .torrent file, read into memory and
 * opened with gtio_open_gto (the buffer is freed right after the call: the
 * library keeps its own copy).
 *
 * The listing (name, offset in the stream, size) goes to stderr, so that
 * stdout carries only the requested bytes: <len> bytes of <file-name> starting
 * at <offset> inside that file (fewer if the file ends first). Exits 0 on
 * success, 1 with a message on stderr on any failure.
 *
 * Environment: GTIO_CA_BUNDLE=<pem> trusts an extra CA (for https test servers).
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <gtio.h>

#define PROG "torrent_ls"
#define MAX_TORRENT_BYTES (64u << 20)
#define CHUNK (1u << 20)

static void gtio_fail(const char *what, const GTIO_Error *e)
{
    fprintf(stderr, PROG ": %s failed: %s (errno %d: %s", what, e->message, (int)e->code,
            strerror((int)e->code));
    if (e->http_status != 0)
        fprintf(stderr, ", HTTP %d", (int)e->http_status);
    fprintf(stderr, ")\n");
}

/* Parse a non-negative decimal integer; 0 ok, -1 not a number. */
static int parse_u64(const char *s, uint64_t *out)
{
    char *end = NULL;
    unsigned long long v;
    if (!s || !*s || *s == '-')
        return -1;
    errno = 0;
    v = strtoull(s, &end, 10);
    if (errno != 0 || !end || *end != '\0')
        return -1;
    *out = (uint64_t)v;
    return 0;
}

/* Read a whole local file (at most MAX_TORRENT_BYTES). NULL on failure. */
static unsigned char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    unsigned char *buf = NULL;
    size_t n = 0, cap = 0;
    if (!f) {
        fprintf(stderr, PROG ": cannot open %s: %s\n", path, strerror(errno));
        return NULL;
    }
    for (;;) {
        size_t got;
        if (n == cap) {
            unsigned char *bigger;
            cap = cap ? 2 * cap : 65536;
            if (cap > MAX_TORRENT_BYTES + 1)
                cap = MAX_TORRENT_BYTES + 1;
            if (n == cap) {
                fprintf(stderr, PROG ": %s is larger than 64 MiB: not a torrent\n", path);
                goto fail;
            }
            bigger = realloc(buf, cap);
            if (!bigger) {
                fprintf(stderr, PROG ": out of memory reading %s\n", path);
                goto fail;
            }
            buf = bigger;
        }
        got = fread(buf + n, 1, cap - n, f);
        n += got;
        if (got == 0) {
            if (ferror(f)) {
                fprintf(stderr, PROG ": cannot read %s\n", path);
                goto fail;
            }
            break;
        }
    }
    fclose(f);
    *len = n;
    return buf;
fail:
    free(buf);
    fclose(f);
    return NULL;
}

static int maybe_init(void)
{
    const char *ca = getenv("GTIO_CA_BUNDLE");
    GTIO_Config cfg;
    GTIO_Error err;
    if (!ca || !*ca)
        return 0;
    gtio_config_default(&cfg);
    cfg.ca_bundle = ca;
    if (gtio_lib_init(&cfg, &err) != 0) {
        gtio_fail("gtio_lib_init", &err);
        return -1;
    }
    return 0;
}

static GTIO *open_dataset(const char *arg)
{
    GTIO_Error err;
    GTIO *h;
    if (strstr(arg, "://")) {
        h = gtio_open_uri(arg, NULL, &err);
        if (!h)
            gtio_fail("gtio_open_uri", &err);
    } else {
        size_t len = 0;
        unsigned char *buf = read_file(arg, &len);
        if (!buf)
            return NULL;
        h = gtio_open_gto(buf, len, NULL, &err);
        free(buf); /* the library copied what it keeps */
        if (!h)
            gtio_fail("gtio_open_gto", &err);
    }
    return h;
}

/* Write [start, start + len) of the stream to stdout. 0 ok, -1 failed. */
static int copy_out(GTIO *h, uint64_t start, uint64_t len)
{
    GTIO_Error err;
    unsigned char *buf = malloc(CHUNK);
    int rc = 0;
    if (!buf) {
        fprintf(stderr, PROG ": out of memory\n");
        return -1;
    }
    while (len > 0) {
        size_t want = len < CHUNK ? (size_t)len : CHUNK;
        int64_t n = gtio_pread(h, buf, want, start, &err);
        if (n < 0) {
            gtio_fail("gtio_pread", &err);
            rc = -1;
            break;
        }
        if (n == 0) {
            fprintf(stderr, PROG ": unexpected end of stream at %" PRIu64 "\n", start);
            rc = -1;
            break;
        }
        if (fwrite(buf, 1, (size_t)n, stdout) != (size_t)n) {
            fprintf(stderr, PROG ": writing stdout: %s\n", strerror(errno));
            rc = -1;
            break;
        }
        start += (uint64_t)n;
        len -= (uint64_t)n;
    }
    free(buf);
    if (rc == 0 && fflush(stdout) != 0) {
        fprintf(stderr, PROG ": writing stdout: %s\n", strerror(errno));
        rc = -1;
    }
    return rc;
}

int main(int argc, char **argv)
{
    GTIO_Error err;
    GTIO_FileInfo *fi = NULL;
    GTIO *h = NULL;
    int64_t count = 0, i;
    uint64_t offset, len;
    const GTIO_FileInfo *file = NULL;
    int status = 1;

    if (argc != 5) {
        fprintf(stderr, "usage: " PROG " <torrent-path-or-uri> <file-name> <offset> <len>\n");
        return 2;
    }
    if (parse_u64(argv[3], &offset) != 0 || parse_u64(argv[4], &len) != 0) {
        fprintf(stderr, PROG ": offset and len must be non-negative integers\n");
        return 2;
    }
    if (maybe_init() != 0)
        return 1;
    h = open_dataset(argv[1]);
    if (!h)
        goto out;

    count = gtio_get_file_list(h, &fi, &err);
    if (count < 0) {
        gtio_fail("gtio_get_file_list", &err);
        goto out;
    }
    fprintf(stderr, "%" PRId64 " files:\n", count);
    for (i = 0; i < count; i++) {
        fprintf(stderr, "  %12" PRIu64 " %12" PRIu64 "  %s\n", fi[i].offset, fi[i].size,
                fi[i].name);
        if (!file && strcmp(fi[i].name, argv[2]) == 0)
            file = &fi[i];
    }
    if (!file) {
        fprintf(stderr, PROG ": no file named \"%s\" in %s\n", argv[2], argv[1]);
        goto out;
    }
    if (offset > file->size) {
        fprintf(stderr, PROG ": offset %" PRIu64 " is past the end of %s (%" PRIu64 " bytes)\n",
                offset, file->name, file->size);
        goto out;
    }
    if (len > file->size - offset)
        len = file->size - offset;
    if (copy_out(h, file->offset + offset, len) != 0)
        goto out;
    status = 0;

out:
    gtio_free_file_list(fi, count > 0 ? count : 0);
    if (h && gtio_close(h, &err) != 0) {
        gtio_fail("gtio_close", &err);
        status = 1;
    }
    return status;
}
