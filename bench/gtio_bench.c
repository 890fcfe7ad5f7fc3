/* gtio_bench: the gtio side of `make bench` (driven by bench/run.py).
 *
 *   gtio_bench MODE URI [options]
 *
 * Modes (each prints one line of `key=value` pairs on stdout, for the driver):
 *   seq      gtio_read with a 1 MiB buffer over the whole stream
 *   rand     N cold random reads of --len bytes, one at a time (gtio_pread)
 *   async    N cold random reads with --qd in flight on this thread's ring
 *            (gtio_pread_async, poll() on gtio_poll_fd, gtio_poll drain)
 *   hits     cache-hit reads: warm --warm bytes at the start of the stream,
 *            then --hits random reads inside it: ops/s, then p50/p99 latency
 *   torrent  gtio_open_uri of a .torrent, read the whole stream like `seq`
 *   hash     hash a local file (URI is a path) with the same hash `seq` uses
 *
 * Options:
 *   --offsets FILE   one offset per line (rand, async); the driver gives curl
 *                    the same list
 *   --len N          bytes per random read (4096)
 *   --qd N           async reads in flight (16)
 *   --local PATH     verify: random reads are compared with this local copy
 *   --block N --cache N --workers N --conns N --readahead N
 *                    GTIO_Config fields for gtio_lib_init (0 / absent: default)
 *   --warm N --hits N  (hits mode)
 *
 * Timing covers the reads only (gtio_open_uri, the HEAD or metainfo fetch and
 * verification are outside it). `seq`/`torrent` hash what they read (a 4-lane
 * 64-bit multiply-xor hash, ~10 GB/s); the hashing time is measured and
 * reported separately (hash_s) and subtracted from seconds.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <gtio.h>

#define MiB (1024u * 1024u)

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void die(const char *what, const GTIO_Error *e)
{
    if (e && e->code)
        fprintf(stderr, "gtio_bench: %s: [%d %s] http=%d %s\n", what, e->code, strerror(e->code),
                e->http_status, e->message);
    else
        fprintf(stderr, "gtio_bench: %s\n", what);
    exit(2);
}

/* ---- hash: 4 lanes of (h ^ w) * K over little-endian 64-bit words ---- */
struct hasher {
    uint64_t lane[4];
    uint64_t total;
    unsigned char tail[32];
    size_t ntail;
};

#define HK 0x9E3779B97F4A7C15ull

static void hash_init(struct hasher *h)
{
    memset(h, 0, sizeof *h);
    for (int i = 0; i < 4; i++)
        h->lane[i] = 0x243F6A8885A308D3ull + (uint64_t)i;
}

static void hash_block32(struct hasher *h, const unsigned char *p)
{
    uint64_t w[4];
    memcpy(w, p, 32);
    for (int i = 0; i < 4; i++)
        h->lane[i] = (h->lane[i] ^ w[i]) * HK;
}

static void hash_update(struct hasher *h, const unsigned char *p, size_t n)
{
    h->total += n;
    if (h->ntail) {
        size_t take = 32 - h->ntail < n ? 32 - h->ntail : n;
        memcpy(h->tail + h->ntail, p, take);
        h->ntail += take;
        p += take;
        n -= take;
        if (h->ntail < 32)
            return;
        hash_block32(h, h->tail);
        h->ntail = 0;
    }
    uint64_t l0 = h->lane[0], l1 = h->lane[1], l2 = h->lane[2], l3 = h->lane[3];
    while (n >= 32) {
        uint64_t w[4];
        memcpy(w, p, 32);
        l0 = (l0 ^ w[0]) * HK;
        l1 = (l1 ^ w[1]) * HK;
        l2 = (l2 ^ w[2]) * HK;
        l3 = (l3 ^ w[3]) * HK;
        p += 32;
        n -= 32;
    }
    h->lane[0] = l0, h->lane[1] = l1, h->lane[2] = l2, h->lane[3] = l3;
    memcpy(h->tail, p, n);
    h->ntail = n;
}

static uint64_t hash_final(struct hasher *h)
{
    uint64_t r = h->total * HK;
    for (size_t i = 0; i < h->ntail; i++)
        r = (r ^ h->tail[i]) * HK;
    for (int i = 0; i < 4; i++)
        r = (r ^ (h->lane[i] >> 29) ^ h->lane[i]) * HK;
    return r ^ (r >> 32);
}

/* ---- options ---- */
static struct {
    const char *offsets, *local;
    size_t len;
    int qd;
    uint64_t block, cache, workers, conns, readahead, warm, hits;
    int readahead_set;
} opt = {.len = 4096, .qd = 16, .warm = 16 * MiB, .hits = 1000000};

static uint64_t num(const char *s)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 0);
    if (errno || *end)
        die("bad number in arguments", NULL);
    return v;
}

static void parse(int argc, char **argv)
{
    for (int i = 3; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            die("option without a value", NULL);
        const char *v = argv[++i];
        if (!strcmp(a, "--offsets")) opt.offsets = v;
        else if (!strcmp(a, "--local")) opt.local = v;
        else if (!strcmp(a, "--len")) opt.len = num(v);
        else if (!strcmp(a, "--qd")) opt.qd = (int)num(v);
        else if (!strcmp(a, "--block")) opt.block = num(v);
        else if (!strcmp(a, "--cache")) opt.cache = num(v);
        else if (!strcmp(a, "--workers")) opt.workers = num(v);
        else if (!strcmp(a, "--conns")) opt.conns = num(v);
        else if (!strcmp(a, "--readahead")) opt.readahead = num(v), opt.readahead_set = 1;
        else if (!strcmp(a, "--warm")) opt.warm = num(v);
        else if (!strcmp(a, "--hits")) opt.hits = num(v);
        else {
            fprintf(stderr, "gtio_bench: unknown option %s\n", a);
            exit(2);
        }
    }
    if (opt.len == 0 || opt.qd <= 0)
        die("--len and --qd must be positive", NULL);
}

static GTIO_Config cfg;

static void init_lib(void)
{
    GTIO_Error e = {0};
    gtio_config_default(&cfg);
    if (opt.block) cfg.block_size = (uint32_t)opt.block;
    if (opt.cache) cfg.cache_bytes = opt.cache;
    if (opt.workers) cfg.workers = (uint32_t)opt.workers;
    if (opt.conns) cfg.max_conns_per_host = (uint32_t)opt.conns;
    if (opt.readahead_set) cfg.readahead_max_bytes = opt.readahead;
    if (gtio_lib_init(&cfg, &e) != 0)
        die("gtio_lib_init", &e);
}

static void print_config(void)
{
    printf(" cfg_cache_bytes=%" PRIu64 " cfg_block_size=%u cfg_workers=%u cfg_conns=%u"
           " cfg_readahead=%" PRIu64 " gtio_version=%s",
           cfg.cache_bytes, cfg.block_size, cfg.workers, cfg.max_conns_per_host,
           cfg.readahead_max_bytes, gtio_version());
}

static long vm_kib(const char *key)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = -1;
    size_t kl = strlen(key);
    if (!f)
        return -1;
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl) && line[kl] == ':') {
            v = strtol(line + kl + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

static GTIO *open_or_die(const char *uri)
{
    GTIO_Error e = {0};
    GTIO *h = gtio_open_uri(uri, NULL, &e);
    if (!h)
        die("gtio_open_uri", &e);
    return h;
}

/* ---- seq / torrent ---- */
static int mode_stream(const char *uri)
{
    GTIO_Error e = {0};
    double t_open = now();
    GTIO *h = open_or_die(uri);
    t_open = now() - t_open;
    int64_t size = gtio_size(h, &e);
    if (size < 0)
        die("gtio_size", &e);
    unsigned char *buf = malloc(MiB);
    if (!buf)
        die("out of memory", NULL);
    struct hasher hs;
    hash_init(&hs);
    uint64_t total = 0;
    double hash_s = 0;
    double t0 = now();
    for (;;) {
        int64_t n = gtio_read(h, buf, MiB, &e);
        if (n < 0)
            die("gtio_read", &e);
        if (n == 0)
            break;
        double th = now();
        hash_update(&hs, buf, (size_t)n);
        hash_s += now() - th;
        total += (uint64_t)n;
    }
    double secs = now() - t0 - hash_s; /* verification is not the read */
    long hwm = vm_kib("VmHWM");
    printf("bytes=%" PRIu64 " size=%" PRId64 " seconds=%.6f open_s=%.6f hash_s=%.6f"
           " mib_s=%.1f peak_rss_kib=%ld hash=%016" PRIx64,
           total, size, secs, t_open, hash_s, (double)total / MiB / secs, hwm, hash_final(&hs));
    print_config();
    putchar('\n');
    gtio_close(h, NULL);
    free(buf);
    return total == (uint64_t)size ? 0 : 1;
}

/* ---- local hash ---- */
static int mode_hash(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0) {
        perror(path);
        return 2;
    }
    unsigned char *buf = malloc(4 * MiB);
    struct hasher hs;
    hash_init(&hs);
    ssize_t n;
    while ((n = read(fd, buf, 4 * MiB)) > 0)
        hash_update(&hs, buf, (size_t)n);
    close(fd);
    free(buf);
    if (n < 0) {
        perror(path);
        return 2;
    }
    printf("bytes=%" PRIu64 " hash=%016" PRIx64 "\n", hs.total, hash_final(&hs));
    return 0;
}

/* ---- random reads ---- */
static uint64_t *load_offsets(size_t *count)
{
    if (!opt.offsets)
        die("--offsets is required", NULL);
    FILE *f = fopen(opt.offsets, "r");
    if (!f)
        die("cannot open --offsets file", NULL);
    size_t cap = 1024, n = 0;
    uint64_t *v = malloc(cap * sizeof *v);
    unsigned long long x;
    while (fscanf(f, "%llu", &x) == 1) {
        if (n == cap)
            v = realloc(v, (cap *= 2) * sizeof *v);
        v[n++] = x;
    }
    fclose(f);
    if (n == 0)
        die("--offsets file is empty", NULL);
    *count = n;
    return v;
}

/* Compare each read with the local copy; returns the number of mismatches. */
static size_t verify(const uint64_t *offs, const int64_t *got, const unsigned char *bufs,
                     size_t n, int64_t size)
{
    if (!opt.local)
        return 0;
    int fd = open(opt.local, O_RDONLY);
    if (fd < 0)
        die("cannot open --local file", NULL);
    unsigned char *want = malloc(opt.len);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        int64_t exp = (int64_t)opt.len;
        if ((int64_t)offs[i] >= size)
            exp = 0;
        else if ((int64_t)(offs[i] + opt.len) > size)
            exp = size - (int64_t)offs[i];
        ssize_t r = pread(fd, want, (size_t)exp, (off_t)offs[i]);
        if (got[i] != exp || r != exp || memcmp(want, bufs + i * opt.len, (size_t)exp)) {
            if (bad < 5)
                fprintf(stderr, "gtio_bench: MISMATCH at offset %" PRIu64 ": got %" PRId64
                        " bytes, want %" PRId64 "\n", offs[i], got[i], exp);
            bad++;
        }
    }
    free(want);
    close(fd);
    return bad;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void print_lat(const char *prefix, double *lat, size_t n)
{
    qsort(lat, n, sizeof *lat, cmp_double);
    printf(" %s_p50_us=%.2f %s_p99_us=%.2f %s_max_us=%.2f", prefix, lat[n / 2] * 1e6, prefix,
           lat[(size_t)((double)n * 0.99)] * 1e6, prefix, lat[n - 1] * 1e6);
}

static int mode_rand(const char *uri)
{
    GTIO_Error e = {0};
    size_t n;
    uint64_t *offs = load_offsets(&n);
    GTIO *h = open_or_die(uri);
    int64_t size = gtio_size(h, &e);
    unsigned char *bufs = malloc(n * opt.len);
    int64_t *got = malloc(n * sizeof *got);
    double *lat = malloc(n * sizeof *lat);
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        double t = now();
        got[i] = gtio_pread(h, bufs + i * opt.len, opt.len, offs[i], &e);
        lat[i] = now() - t;
        if (got[i] < 0)
            die("gtio_pread", &e);
    }
    double secs = now() - t0;
    size_t bad = verify(offs, got, bufs, n, size);
    printf("ops=%zu seconds=%.6f ops_s=%.1f mismatches=%zu", n, secs, (double)n / secs, bad);
    print_lat("lat", lat, n);
    print_config();
    putchar('\n');
    gtio_close(h, NULL);
    return bad ? 1 : 0;
}

/* ---- async ---- */
struct areq {
    gtio_usercb_t ucb;
    size_t idx;
    int busy;
};

static size_t a_done;
static int64_t *a_got;

static void on_done(gtio_usercb_t *ucb)
{
    struct areq *r = ucb->cb_data;
    a_got[r->idx] = ucb->ret;
    r->busy = 0;
    a_done++;
}

static int mode_async(const char *uri)
{
    GTIO_Error e = {0};
    size_t n;
    uint64_t *offs = load_offsets(&n);
    GTIO *h = open_or_die(uri);
    int64_t size = gtio_size(h, &e);
    unsigned char *bufs = malloc(n * opt.len);
    a_got = malloc(n * sizeof *a_got);
    struct areq *slots = calloc((size_t)opt.qd, sizeof *slots);
    gtio_usercomp_t comps[64];
    int fd = gtio_poll_fd();
    if (fd < 0)
        die("gtio_poll_fd failed", NULL);
    size_t next = 0;
    int inflight = 0;
    double t0 = now();
    while (a_done < n) {
        for (int s = 0; s < opt.qd && next < n; s++) {
            if (slots[s].busy)
                continue;
            slots[s].ucb.cb_func = on_done;
            slots[s].ucb.cb_data = &slots[s];
            slots[s].idx = next;
            slots[s].busy = 1;
            if (gtio_pread_async(h, bufs + next * opt.len, opt.len, offs[next], 0, &slots[s].ucb,
                                 &e) != 0) {
                if (e.code == EAGAIN) {
                    slots[s].busy = 0;
                    break;
                }
                die("gtio_pread_async", &e);
            }
            next++;
        }
        int got;
        while ((got = gtio_poll(comps, 64)) > 0)
            for (int i = 0; i < got; i++)
                comps[i].ucp_fun(comps[i].ucp_res, comps[i].ucp_arg);
        if (got < 0)
            die("gtio_poll failed", NULL);
        inflight = 0;
        for (int s = 0; s < opt.qd; s++)
            inflight += slots[s].busy;
        if (a_done < n && (inflight == opt.qd || next == n)) {
            struct pollfd p = {.fd = fd, .events = POLLIN};
            if (poll(&p, 1, 30000) == 0)
                die("no completion for 30 s", NULL);
            uint64_t v;
            (void)!read(fd, &v, sizeof v); /* hint only; drained above anyway */
        }
    }
    double secs = now() - t0;
    for (size_t i = 0; i < n; i++)
        if (a_got[i] < 0) {
            fprintf(stderr, "gtio_bench: async read %zu failed: %s\n", i,
                    strerror((int)-a_got[i]));
            exit(2);
        }
    size_t bad = verify(offs, a_got, bufs, n, size);
    printf("ops=%zu seconds=%.6f ops_s=%.1f qd=%d mismatches=%zu", n, secs, (double)n / secs,
           opt.qd, bad);
    print_config();
    putchar('\n');
    gtio_close(h, NULL);
    return bad ? 1 : 0;
}

/* ---- cache hits ---- */
static uint64_t xs(uint64_t *s)
{
    uint64_t x = *s;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return *s = x;
}

static int mode_hits(const char *uri)
{
    GTIO_Error e = {0};
    GTIO *h = open_or_die(uri);
    int64_t size = gtio_size(h, &e);
    uint64_t warm = opt.warm < (uint64_t)size ? opt.warm : (uint64_t)size;
    unsigned char *buf = malloc(MiB > opt.len ? MiB : opt.len);
    for (uint64_t off = 0; off < warm; off += MiB)
        if (gtio_pread(h, buf, MiB, off, &e) < 0)
            die("gtio_pread (warm-up)", &e);
    uint64_t slots = warm > opt.len ? (warm - opt.len) / opt.len : 1;
    size_t n = (size_t)opt.hits;
    uint64_t *offs = malloc(n * sizeof *offs);
    uint64_t s = 88172645463325252ull;
    for (size_t i = 0; i < n; i++)
        offs[i] = (xs(&s) % slots) * opt.len;
    /* pass 1: throughput, no per-op clock */
    uint64_t sink = 0;
    double t0 = now();
    for (size_t i = 0; i < n; i++) {
        int64_t r = gtio_pread(h, buf, opt.len, offs[i], &e);
        if (r != (int64_t)opt.len)
            die("gtio_pread (hit)", &e);
        sink += buf[0];
    }
    double secs = now() - t0;
    /* pass 2: latency of each op */
    size_t nl = n < 200000 ? n : 200000;
    double *lat = malloc(nl * sizeof *lat);
    for (size_t i = 0; i < nl; i++) {
        double t = now();
        if (gtio_pread(h, buf, opt.len, offs[i], &e) != (int64_t)opt.len)
            die("gtio_pread (hit)", &e);
        lat[i] = now() - t;
    }
    /* the clock's own cost, to read the latencies against */
    double c0 = now();
    for (int i = 0; i < 1000; i++)
        (void)now();
    double clock_ns = (now() - c0) / 1000 * 1e9;
    printf("ops=%zu seconds=%.6f ops_s=%.1f warm=%" PRIu64 " clock_ns=%.1f sink=%" PRIu64, n,
           secs, (double)n / secs, warm, clock_ns, sink & 1);
    print_lat("lat", lat, nl);
    print_config();
    putchar('\n');
    gtio_close(h, NULL);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: gtio_bench seq|rand|async|hits|torrent|hash URI [options]\n");
        return 2;
    }
    const char *mode = argv[1], *uri = argv[2];
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (!strcmp(mode, "hash"))
        return mode_hash(uri);
    parse(argc, argv);
    init_lib();
    int rc;
    if (!strcmp(mode, "seq") || !strcmp(mode, "torrent"))
        rc = mode_stream(uri);
    else if (!strcmp(mode, "rand"))
        rc = mode_rand(uri);
    else if (!strcmp(mode, "async"))
        rc = mode_async(uri);
    else if (!strcmp(mode, "hits"))
        rc = mode_hits(uri);
    else {
        fprintf(stderr, "gtio_bench: unknown mode %s\n", mode);
        return 2;
    }
    gtio_lib_fini(NULL);
    return rc;
}
