/*
 * hfile_gtio.so: an htslib hFILE plugin reading through gtio.
 *
 * Schemes gtio+http, gtio+https, gtio+file. "gtio+https://host/a.bam" reads a
 * plain object; "gtio+https://host/set.torrent#dir/a.bam" reads one member of
 * a torrent, so htslib's appended ".bai"/".csi"/".tbi" names the index inside
 * the same torrent. See htslib/README.md.
 *
 * htslib's plugin interface (hfile_internal.h) is not shipped by Debian's
 * libhts-dev: the few declarations below are written here from the
 * documented interface and checked against libhts3's exported symbols.
 *
 * Reads: each open hFILE owns one engine reader (GTIO_Reader) over the
 * member's window, so it has its own readahead, bounded by the window's end
 * (never an open-ended range), and readers of a BAM and its index never
 * reset each other. A backend read is one gtio_reader_read of at most the
 * hFILE buffer's capacity; a seek only moves the reader's offset, and what
 * the engine already holds (an earlier read, readahead) is served from its
 * cache.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include <htslib/hfile.h>

#include "gtio.h"

/* ---- htslib's plugin interface (our own declarations) ------------------ */

struct hFILE_backend {
    ssize_t (*read)(hFILE *fp, void *buffer, size_t nbytes);
    ssize_t (*write)(hFILE *fp, const void *buffer, size_t nbytes);
    off_t (*seek)(hFILE *fp, off_t offset, int whence);
    int (*flush)(hFILE *fp);
    int (*close)(hFILE *fp);
};

struct hFILE_scheme_handler {
    hFILE *(*open)(const char *filename, const char *mode);
    int (*isremote)(const char *filename);
    const char *provider;
    int priority;
    hFILE *(*vopen)(const char *filename, const char *mode, va_list args);
};

struct hFILE_plugin {
    int api_version; /* set by htslib; 1 is the only version defined */
    void *obj;
    const char *name;
    void (*destroy)(void);
};

extern hFILE *hfile_init(size_t struct_size, const char *mode, size_t capacity);
extern void hfile_destroy(hFILE *fp);
/* Declared by htslib/hfile.h only inside its inline hwrite. */
extern int hfile_set_blksize(hFILE *fp, size_t bufsiz);
extern void hfile_add_scheme_handler(const char *scheme,
                                     const struct hFILE_scheme_handler *handler);
int hfile_plugin_init(struct hFILE_plugin *self);

/* ---- shared datasets ---------------------------------------------------- */

/* One open gtio handle per dataset URI, shared by the files opened from it
 * (a BAM and its index in the same torrent fetch the metainfo once). */
struct dataset {
    struct dataset *next;
    char *uri;
    GTIO *g;
    int refs;
};

static pthread_mutex_t ds_lock = PTHREAD_MUTEX_INITIALIZER;
static struct dataset *ds_list;

static int gtio_errno(const GTIO_Error *e)
{
    return e->code > 0 ? e->code : EIO;
}

static void report(const char *what, const GTIO_Error *e)
{
    /* GTIO_Error messages never contain credentials. */
    if (getenv("GTIO_HTS_VERBOSE"))
        fprintf(stderr, "[hfile_gtio] %s: %s\n", what, e->message);
}

static struct dataset *dataset_get(const char *uri)
{
    pthread_mutex_lock(&ds_lock);
    for (struct dataset *d = ds_list; d; d = d->next) {
        if (strcmp(d->uri, uri) == 0) {
            d->refs++;
            pthread_mutex_unlock(&ds_lock);
            return d;
        }
    }
    pthread_mutex_unlock(&ds_lock);

    GTIO_Error err;
    memset(&err, 0, sizeof err);
    const char *cred = getenv("GTIO_CRED");
    if (cred && !*cred)
        cred = NULL;
    GTIO *g = gtio_open_uri(uri, cred, &err);
    if (!g) {
        report(uri, &err);
        errno = gtio_errno(&err);
        return NULL;
    }
    struct dataset *d = calloc(1, sizeof *d);
    char *u = strdup(uri);
    if (!d || !u) {
        free(d);
        free(u);
        gtio_close(g, NULL);
        errno = ENOMEM;
        return NULL;
    }
    d->uri = u;
    d->g = g;
    d->refs = 1;
    pthread_mutex_lock(&ds_lock);
    /* Another thread may have opened the same URI meanwhile: keep both; each
     * is closed when its last user goes. */
    d->next = ds_list;
    ds_list = d;
    pthread_mutex_unlock(&ds_lock);
    return d;
}

static void dataset_put(struct dataset *d)
{
    pthread_mutex_lock(&ds_lock);
    int last = --d->refs == 0;
    if (last) {
        for (struct dataset **p = &ds_list; *p; p = &(*p)->next) {
            if (*p == d) {
                *p = d->next;
                break;
            }
        }
    }
    pthread_mutex_unlock(&ds_lock);
    if (last) {
        gtio_close(d->g, NULL);
        free(d->uri);
        free(d);
    }
}

/* Block size of plain objects, for aligned reads (set at plugin init). */
static uint64_t plain_block_size;

/* ---- the reader --------------------------------------------------------- */

/* One engine reader (GTIO_Reader) per open hFILE, over the member's window
 * (or the whole object): its own offset and its own readahead window, which
 * never runs past the window's end. The reader keeps its dataset alive; the
 * dataset reference is dropped after the reader is closed. */
struct gtio_reader {
    struct dataset *ds;
    GTIO_Reader *rd;
    uint64_t start; /* the window's first byte in the stream */
    uint64_t pos;   /* the reader's offset, mirrored (reads and seeks set it) */
    uint64_t align; /* block size of a plain object; 0 = do not align */
};

/* A plain object is fetched in whole blocks (block_size). A read that ends
 * inside a block would fetch all of it and return part: end it on a block
 * boundary instead (the next read starts there), so a region's one read
 * fetches only blocks it returns.
 * The open's one request brought the first block (docs/http.md, "Opening an
 * object"), so a read starting in it ends with it: the header comes from the
 * cache, not from a second request for the rest of a full buffer. */
static size_t aligned_count(const struct gtio_reader *r, size_t n)
{
    uint64_t at = r->start + r->pos;
    if (r->align != 0 && at < r->align && n > r->align - at)
        return (size_t)(r->align - at);
    if (r->align == 0 || n <= r->align)
        return n;
    uint64_t end = at + n;
    uint64_t cut = end - end % r->align;
    return cut > at ? (size_t)(cut - at) : n;
}

static ssize_t reader_read(struct gtio_reader *r, void *buf, size_t n)
{
    GTIO_Error err;
    memset(&err, 0, sizeof err);
    int64_t got = gtio_reader_read(r->rd, buf, aligned_count(r, n), &err);
    if (got < 0) {
        report("read", &err);
        errno = gtio_errno(&err);
        return -1;
    }
    r->pos += (uint64_t)got;
    return (ssize_t)got;
}

static off_t reader_seek(struct gtio_reader *r, off_t off, int whence)
{
    GTIO_Error err;
    memset(&err, 0, sizeof err);
    /* Past the end is allowed (reads give 0); negative is EINVAL. Never
     * blocks: the next read fetches (or finds cached) what it needs. */
    int64_t at = gtio_reader_lseek(r->rd, (int64_t)off, whence, &err);
    if (at < 0) {
        errno = gtio_errno(&err);
        return -1;
    }
    r->pos = (uint64_t)at;
    return (off_t)at;
}

static void reader_close(struct gtio_reader *r)
{
    gtio_reader_close(r->rd, NULL);
    dataset_put(r->ds);
}

/* ---- hFILE glue ---------------------------------------------------------- */

typedef struct {
    hFILE base; /* first: htslib casts between hFILE* and this */
    struct gtio_reader r;
} hFILE_gtio;

static ssize_t gtio_hread(hFILE *fp, void *buf, size_t n)
{
    return reader_read(&((hFILE_gtio *)fp)->r, buf, n);
}

static ssize_t gtio_hwrite(hFILE *fp, const void *buf, size_t n)
{
    (void)fp, (void)buf, (void)n;
    errno = EROFS;
    return -1;
}

static off_t gtio_hseek(hFILE *fp, off_t off, int whence)
{
    return reader_seek(&((hFILE_gtio *)fp)->r, off, whence);
}

static int gtio_hflush(hFILE *fp)
{
    (void)fp;
    return 0;
}

static int gtio_hclose(hFILE *fp)
{
    reader_close(&((hFILE_gtio *)fp)->r);
    return 0;
}

static const struct hFILE_backend gtio_backend = {
    gtio_hread, gtio_hwrite, gtio_hseek, gtio_hflush, gtio_hclose,
};

/* Buffer per open file = the size of each bounded range read. */
static size_t read_capacity(void)
{
    const char *s = getenv("GTIO_HTS_READ_BYTES");
    if (s && *s) {
        char *end;
        unsigned long long v = strtoull(s, &end, 10);
        if (*end == '\0' && v >= 4096 && v <= (64ull << 20))
            return (size_t)v;
    }
    return 256 * 1024;
}

/* Find `member` in the dataset: its window, or ENOENT. */
static int find_member_exact(struct dataset *d, const char *member, uint64_t *start,
                             uint64_t *size)
{
    GTIO_FileInfo *fi = NULL;
    GTIO_Error err;
    memset(&err, 0, sizeof err);
    int64_t n = gtio_get_file_list(d->g, &fi, &err);
    if (n < 0) {
        report("file list", &err);
        errno = gtio_errno(&err);
        return -1;
    }
    int found = 0;
    for (int64_t i = 0; i < n; i++) {
        if (strcmp(fi[i].name, member) == 0) {
            *start = fi[i].offset;
            *size = fi[i].size;
            found = 1;
            break;
        }
    }
    gtio_free_file_list(fi, n);
    if (!found) {
        errno = ENOENT;
        return -1;
    }
    return 0;
}

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* A URL fragment arrives percent-encoded ("dir/a%20b.bam"). The name as
 * given is tried first (a file may be called "a%20b.bam"), then its
 * decoding; "%00" and a '%' without two hex digits are never decoded. */
static int find_member(struct dataset *d, const char *member, uint64_t *start, uint64_t *size)
{
    if (find_member_exact(d, member, start, size) == 0)
        return 0;
    if (errno != ENOENT || !strchr(member, '%'))
        return -1;
    char *decoded = strdup(member);
    if (!decoded) {
        errno = ENOMEM;
        return -1;
    }
    char *out = decoded;
    for (const char *in = member; *in; in++) {
        int hi, lo;
        if (in[0] == '%' && (hi = hex_digit(in[1])) >= 0 && (lo = hex_digit(in[2])) >= 0 &&
            (hi | lo) != 0) {
            *out++ = (char)(hi * 16 + lo);
            in += 2;
        } else {
            *out++ = *in;
        }
    }
    *out = '\0';
    int rc = find_member_exact(d, decoded, start, size);
    int e = errno;
    free(decoded);
    errno = e;
    return rc;
}

/* htslib puts the index suffix before a URL's '#fragment': the index of
 * "set.torrent#dir/a.bam" is asked for as "set.torrent.bai#dir/a.bam".
 * Move the suffix onto the member: "set.torrent#dir/a.bam.bai". Edits `uri`
 * (split at '#' already) in place; returns the suffix to append, or NULL. */
static const char *index_suffix(char *uri)
{
    static const char *const exts[] = {".bai", ".csi", ".tbi", ".crai"};
    size_t n = strlen(uri);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i]);
        if (n > e + 8 && strcmp(uri + n - e, exts[i]) == 0 &&
            strncmp(uri + n - e - 8, ".torrent", 8) == 0) {
            uri[n - e] = '\0';
            return exts[i];
        }
    }
    return NULL;
}

/* htslib's second guess at an index replaces the file's extension and
 * keeps the '#member': for "set.torrent#dir/a.bam" it asks for
 * "set.csi#dir/a.bam".
 * When "set.torrent" is open here, that name is htslib's guess, not a file
 * the user named: the index of a member is a member (looked up as
 * "#dir/a.bam.csi" first), so answer ENOENT without a request. */
static int is_torrent_index_guess(const char *uri)
{
    static const char *const exts[] = {".bai", ".csi", ".tbi", ".crai"};
    size_t n = strlen(uri);
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t e = strlen(exts[i]);
        if (n <= e || strcmp(uri + n - e, exts[i]) != 0)
            continue;
        int open = 0;
        pthread_mutex_lock(&ds_lock);
        for (struct dataset *d = ds_list; d && !open; d = d->next) {
            size_t m = strlen(d->uri);
            open = m == n - e + 8 && strncmp(d->uri, uri, n - e) == 0 &&
                   strcmp(d->uri + n - e, ".torrent") == 0;
        }
        pthread_mutex_unlock(&ds_lock);
        return open;
    }
    return 0;
}

static hFILE *gtio_hopen(const char *filename, const char *mode)
{
    if (strncmp(filename, "gtio+", 5) != 0) {
        errno = EINVAL;
        return NULL;
    }
    if (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+')) {
        errno = EROFS;
        return NULL;
    }
    char *uri = strdup(filename + 5);
    if (!uri) {
        errno = ENOMEM;
        return NULL;
    }
    char *member = strchr(uri, '#');
    if (member)
        *member++ = '\0';
    const int is_member = member != NULL;
    if (member && !*member) {
        free(uri);
        errno = ENOENT;
        return NULL;
    }

    const char *index_suffix_of_open = member ? index_suffix(uri) : NULL;
    if (!index_suffix_of_open && is_torrent_index_guess(uri)) {
        free(uri);
        errno = ENOENT;
        return NULL;
    }
    struct dataset *d = dataset_get(uri);
    if (!d) {
        free(uri);
        return NULL;
    }
    uint64_t start = 0, size = 0;
    if (member) {
        const char *suffix = index_suffix_of_open;
        int rc;
        if (suffix) {
            char *name = NULL;
            rc = asprintf(&name, "%s%s", member, suffix) < 0 ? (errno = ENOMEM, -1)
                                                                : find_member(d, name, &start, &size);
            free(name);
        } else {
            rc = find_member(d, member, &start, &size);
        }
        int e = errno;
        free(uri); /* member points into uri */
        if (rc < 0) {
            dataset_put(d);
            errno = e;
            return NULL;
        }
    } else {
        free(uri);
        GTIO_Error err;
        memset(&err, 0, sizeof err);
        int64_t s = gtio_size(d->g, &err);
        if (s < 0) {
            int e = gtio_errno(&err);
            dataset_put(d);
            errno = e;
            return NULL;
        }
        size = (uint64_t)s;
    }

    GTIO_Error err;
    memset(&err, 0, sizeof err);
    GTIO_Reader *rd = gtio_reader_open(d->g, start, size, &err);
    if (!rd) {
        report("reader", &err);
        int e = gtio_errno(&err);
        dataset_put(d);
        errno = e;
        return NULL;
    }
    hFILE_gtio *fp = (hFILE_gtio *)hfile_init(sizeof(hFILE_gtio), mode, read_capacity());
    if (!fp) {
        int e = errno;
        gtio_reader_close(rd, NULL);
        dataset_put(d);
        errno = e;
        return NULL;
    }
    /* hfile_init clamps a reader's buffer to 32 KiB; hfile_set_blksize
     * (public, htslib/hfile.h) sets the size asked for. */
    size_t cap = read_capacity();
    if (cap > 32768)
        (void)hfile_set_blksize(&fp->base, cap);
    fp->r.ds = d;
    fp->r.rd = rd;
    fp->r.start = start;
    fp->r.pos = 0;
    fp->r.align = is_member ? 0 : plain_block_size;
    fp->base.backend = &gtio_backend;
    return &fp->base;
}

static int gtio_isremote(const char *filename)
{
    /* Always "remote": htslib then opens index files through this plugin
     * (for a local file it would look for "gtio+file://....bai" on disk). */
    (void)filename;
    return 1;
}

/* Settings come from the environment, since htslib passes none: the
 * library reads every GTIO_* variable itself when it starts (and
 * gtio_config_default reports them), so the plugin only starts it. */
static void lib_init_from_env(void)
{
    GTIO_Config cfg;
    gtio_config_default(&cfg);
    /* The library's own bounds of block_size (README, Environment). */
    uint64_t b = cfg.block_size;
    plain_block_size = b < 4096 ? 4096 : b > (64u << 20) ? (64u << 20) : b;
    /* EBUSY (already running in this process, e.g. the host also uses gtio)
     * is fine: its settings stay. */
    gtio_lib_init(&cfg, NULL);
}

static void gtio_plugin_destroy(void)
{
}

int hfile_plugin_init(struct hFILE_plugin *self)
{
    static const struct hFILE_scheme_handler handler = {
        gtio_hopen, gtio_isremote, "gtio", 50, NULL,
    };
    if (self->api_version != 1) {
        errno = EPROTONOSUPPORT;
        return -1;
    }
    self->name = "gtio";
    self->destroy = gtio_plugin_destroy;
    lib_init_from_env();
    hfile_add_scheme_handler("gtio+http", &handler);
    hfile_add_scheme_handler("gtio+https", &handler);
    hfile_add_scheme_handler("gtio+file", &handler);
    return 0;
}
