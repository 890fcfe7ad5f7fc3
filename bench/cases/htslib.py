"""The htslib plugin (htslib/hfile_gtio.c): samtools region queries on a
remote BAM through gtio, side by side with samtools' own http:// (htslib's
libcurl backend), counted on the server side.

The BAM is made here once (cached under BENCH_DATA): generated 100 bp reads
with random bases and qualities, piped to `samtools sort`, then `samtools
index`. A dedicated nginx serves it with an access log recording, per
request, the status, the bytes sent and the Range header. Each measurement is
one samtools process in an empty working directory (so the index is fetched
every time, for both backends):

- the first query: `samtools view URL r1` (header, index, one region);
- N regions: `samtools view URL r1 … rN`; per region after the first =
  (N-region figure − first-query figure) / (N − 1), for requests, bytes sent
  and wall time.

"Needed" is the BGZF bytes a region needs: from the start of the compressed
block where htslib's iterator starts (the index's first chunk past the
linear-index minimum) to the end of the block holding the first record that
starts past the region (where htslib stops), found by decompressing the local
file's blocks here. Targets (issue 14): per region after the first <= 2
requests and <= 3x the needed bytes; first query <= 5 requests; gtio's time
per region <= 1.0x libcurl's and bytes sent <= 0.25x libcurl's.

Standalone: `python3 bench/cases/htslib.py [--smoke]` runs only this case.
"""

import os
import random
import re
import shutil
import struct
import subprocess
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import ROOT, die_with_parent, free_port, human, wait_port  # noqa: E402
from harness import run as run_cmd  # noqa: E402

ORDER = 80
CASE = "htslib"

METHOD = [
    "- htslib (bench/cases/htslib.py): a BAM of generated 100 bp reads (random bases and "
    "qualities; `samtools sort`, `samtools index`) on its own nginx with an access log "
    "(status, bytes sent, Range header per request). samtools 1.16 (Debian's libhts) reads "
    "`gtio+http://` through hfile_gtio.so (HTS_PATH, default settings) and `http://` through "
    "htslib's libcurl backend. One samtools process per measurement, in an empty working "
    "directory (the index is fetched each time). First query = `samtools view URL r1`; "
    "per region after the first = (figure for r1…rN in one process − first query) / (N−1), "
    "for requests, bytes sent (nginx $bytes_sent) and wall time (best of BENCH_REPEAT). "
    "Needed bytes: the compressed blocks htslib's iterator must read for the region (from "
    "the index's first chunk to the block of the first record past the region), found by "
    "decompressing the local file.",
]

LOG_FMT = '$status $bytes_sent "$http_range" $uri'

NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    log_format ranges '{fmt}';
    access_log {tmp}/access.log ranges;
    sendfile on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/cb;
    proxy_temp_path {tmp}/px;
    fastcgi_temp_path {tmp}/fc;
    uwsgi_temp_path {tmp}/uw;
    scgi_temp_path {tmp}/sc;
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


# -- the BAM -------------------------------------------------------------------

def sizes(smoke):
    """(reads, chromosome length, regions, region length)."""
    if smoke:
        return 50_000, 1_500_000, 4, 5_000
    return int(os.environ.get("BENCH_HTS_READS", 800_000)), 10_000_000, 40, 10_000


def make_bam(path, reads, chrom_len):
    """Sorted, indexed BAM of `reads` generated reads over chr1 and chr2."""
    rng = random.Random(14)
    seq_t = bytes((b"ACGT"[i & 3]) for i in range(256))
    qual_t = bytes(33 + (i % 40) for i in range(256))
    tmp = path + ".part"
    sort = subprocess.Popen(
        ["samtools", "sort", "-l", "6", "-m", "256M", "-T", tmp + ".sort", "-o", tmp, "-"],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    hdr = f"@HD\tVN:1.6\tSO:unsorted\n@SQ\tSN:chr1\tLN:{chrom_len}\n@SQ\tSN:chr2\tLN:{chrom_len}\n"
    sort.stdin.write(hdr.encode())
    buf = []
    for i in range(reads):
        chrom = "chr1" if i & 1 else "chr2"
        pos = 1 + rng.randrange(chrom_len - 100)
        raw = rng.randbytes(200)
        buf.append(f"r{i}\t0\t{chrom}\t{pos}\t60\t100M\t*\t0\t0\t"
                   f"{raw[:100].translate(seq_t).decode()}\t{raw[100:].translate(qual_t).decode()}\n")
        if len(buf) == 4096:
            sort.stdin.write("".join(buf).encode())
            buf.clear()
    sort.stdin.write("".join(buf).encode())
    sort.stdin.close()
    err = sort.stderr.read().decode()
    if sort.wait(600) != 0:
        raise RuntimeError(f"samtools sort failed: {err[-500:]}")
    run_cmd(["samtools", "index", tmp], 600)
    os.replace(tmp + ".bai", path + ".bai")
    os.replace(tmp, path)


def read_bai(path):
    """{ref: (bins {bin: [(beg, end)]}, linear [voffset])} of a .bai."""
    data = open(path, "rb").read()
    assert data[:4] == b"BAI\1", "not a BAI"
    (n_ref,), p = struct.unpack_from("<i", data, 4), 8
    refs = []
    for _ in range(n_ref):
        (n_bin,), p = struct.unpack_from("<i", data, p), p + 4
        bins = {}
        for _ in range(n_bin):
            b, n_chunk = struct.unpack_from("<Ii", data, p)
            p += 8
            bins[b] = [struct.unpack_from("<QQ", data, p + 16 * k) for k in range(n_chunk)]
            p += 16 * n_chunk
        (n_intv,), p = struct.unpack_from("<i", data, p), p + 4
        lin = list(struct.unpack_from(f"<{n_intv}Q", data, p))
        p += 8 * n_intv
        refs.append((bins, lin))
    return refs


def reg2bins(beg, end):
    """The BAI bins overlapping [beg, end) (SAM spec, section 5.3)."""
    end -= 1
    out = [0]
    for shift, first in ((26, 1), (23, 9), (20, 73), (17, 585), (14, 4681)):
        out.extend(range(first + (beg >> shift), first + (end >> shift) + 1))
    return out


class Blocks:
    """The local BAM's BGZF blocks, decompressed on demand."""

    def __init__(self, path):
        self.f = open(path, "rb")
        self.cache = {}

    def block(self, coff):
        """(compressed length, data) of the block at `coff`."""
        if coff not in self.cache:
            self.f.seek(coff)
            head = self.f.read(18)
            bsize = struct.unpack_from("<H", head, 16)[0] + 1
            body = head + self.f.read(bsize - 18)
            self.cache[coff] = (bsize, zlib.decompress(body[18:-8], -15))
        return self.cache[coff]


def needed_bytes(blocks, bai, ref, beg, end):
    """Compressed bytes htslib must read for [beg, end) of `ref` (0-based)."""
    bins, lin = bai[ref]
    min_off = lin[min(beg >> 14, len(lin) - 1)] if lin else 0
    chunks = sorted(c for b in reg2bins(beg, end) if b in bins and b != 37450
                    for c in bins[b] if c[1] > min_off)
    if not chunks:
        return 0
    start = max(chunks[0][0], min_off)
    coff, uoff = start >> 16, start & 0xFFFF
    first = coff
    pending = b""
    while True:
        bsize, data = blocks.block(coff)
        if not data:
            return coff - first  # EOF block
        pending += data[uoff:]
        uoff = 0
        while len(pending) >= 4:
            (n,) = struct.unpack_from("<i", pending, 0)
            if len(pending) < 4 + n:
                break
            rid, pos = struct.unpack_from("<ii", pending, 4)
            if rid != ref or pos >= end:
                return coff + bsize - first
            pending = pending[4 + n:]
        coff += bsize


# -- the server ------------------------------------------------------------------

class LoggedNginx:
    """nginx serving `root` with a per-request access log (status, bytes, Range)."""

    def __init__(self, root, tmp):
        self.tmp = tmp
        self.log = os.path.join(tmp, "access.log")
        nginx = os.environ.get("GTIO_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
        self.version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
        for _ in range(3):
            self.port = free_port()
            conf = os.path.join(tmp, "nginx.conf")
            with open(conf, "w") as f:
                f.write(NGINX_CONF.format(tmp=tmp, port=self.port, root=root, fmt=LOG_FMT))
            self.proc = subprocess.Popen(
                [nginx, "-p", tmp, "-e", os.path.join(tmp, "error.log"), "-c", conf],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                preexec_fn=die_with_parent,
            )
            if wait_port(self.port, self.proc):
                return
            self.proc.kill()
            self.proc.wait()
        raise RuntimeError("the htslib case's nginx did not start")

    def url(self, name):
        return f"http://127.0.0.1:{self.port}/{name}"

    def mark(self):
        return os.path.getsize(self.log) if os.path.exists(self.log) else 0

    def since(self, mark):
        """[(status, bytes_sent, range, uri)] logged after `mark`."""
        time.sleep(0.3)  # requests cut short at the client's exit are logged when nginx sees it
        with open(self.log) as f:
            f.seek(mark)
            out = []
            for line in f:
                m = re.match(r'(\d+) (\d+) "([^"]*)" (\S+)', line)
                if m:
                    out.append((int(m.group(1)), int(m.group(2)), m.group(3), m.group(4)))
            return out

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# -- the case --------------------------------------------------------------------

def build_plugin(out_dir):
    lib_dir = os.path.join(ROOT, "target/release")
    os.makedirs(out_dir, exist_ok=True)
    run_cmd([os.environ.get("CC", "cc"), "-std=c11", "-O2", "-fPIC", "-shared",
         f"-I{os.path.join(ROOT, 'include')}", os.path.join(ROOT, "htslib/hfile_gtio.c"),
         "-o", os.path.join(out_dir, "hfile_gtio.so"), f"-L{lib_dir}",
         f"-Wl,-rpath,{lib_dir}", "-lgtio", "-lpthread"], 120)


def samtools_view(url, regions, env, tmp, expect):
    """Wall seconds of one `samtools view url regions…` in an empty cwd;
    its output must be `expect`."""
    cwd = os.path.join(tmp, f"cwd-{time.monotonic_ns()}")
    os.makedirs(cwd)
    t0 = time.perf_counter()
    p = subprocess.run(["samtools", "view", url, *regions], cwd=cwd, env=env,
                       capture_output=True, timeout=300, stdin=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    shutil.rmtree(cwd, ignore_errors=True)
    if p.returncode != 0:
        raise RuntimeError(f"samtools view {url}: {p.stderr.decode()[-500:]}")
    if p.stdout != expect:
        raise RuntimeError(f"samtools view {url}: output differs from the local file")
    return wall


def measure(srv, url, regions, env, tmp, expect, repeat):
    """(requests, bytes sent, best wall, log lines) of one samtools process."""
    best, log = None, None
    for _ in range(repeat):
        m = srv.mark()
        wall = samtools_view(url, regions, env, tmp, expect)
        lines = srv.since(m)
        if best is None or wall < best:
            best, log = wall, lines
    return len(log), sum(b for _, b, _, _ in log), best, log


def open_ended(log):
    return sum(1 for _, _, r, _ in log if re.fullmatch(r"bytes=\d+-", r))


def run(bench):
    missing = [t for t in ("samtools", "nginx") if not (shutil.which(t) or
               (t == "nginx" and os.access("/usr/sbin/nginx", os.X_OK)))]
    if not os.path.exists("/usr/include/htslib/hfile.h"):
        missing.append("libhts-dev")
    if missing:
        bench.skip(CASE, "gtio plugin", f"{', '.join(missing)} not installed (`make deps`)")
        return
    reads, chrom_len, n_regions, span = sizes(bench.smoke)
    data = os.path.join(bench.data_dir, "htslib")
    os.makedirs(data, exist_ok=True)
    bam = os.path.join(data, f"reads-{reads}-{chrom_len}.bam")
    if not (os.path.exists(bam) and os.path.exists(bam + ".bai")):
        t = time.perf_counter()
        make_bam(bam, reads, chrom_len)
        bench.notes.append(f"htslib: made {os.path.basename(bam)} ({human(os.path.getsize(bam))}) "
                           f"in {time.perf_counter() - t:.0f} s (cached in {os.path.relpath(data, ROOT)})")
    tmp = os.path.join(bench.tmp, "htslib")
    os.makedirs(tmp, exist_ok=True)
    plugins = os.path.join(tmp, "plugins")
    build_plugin(plugins)

    rng = random.Random(1670)
    regs = []
    for i in range(n_regions):
        chrom = i % 2
        beg = rng.randrange(0, chrom_len - span)
        regs.append((chrom, beg, beg + span))
    names = [f"chr{c + 1}:{b + 1}-{e}" for c, b, e in regs]
    bai = read_bai(bam + ".bai")
    blocks = Blocks(bam)
    need = [needed_bytes(blocks, bai, c, b, e) for c, b, e in regs]
    size = os.path.getsize(bam)

    expect1 = subprocess.run(["samtools", "view", bam, names[0]], capture_output=True,
                             check=True).stdout
    expect_n = subprocess.run(["samtools", "view", bam, *names], capture_output=True,
                              check=True).stdout
    # The same BAM as a member of a torrent whose web seed is this nginx:
    # set-…/dir/<bam> (hard links in the data dir), the .torrent made per run.
    name = os.path.basename(bam)
    set_name = f"set-{reads}-{chrom_len}"  # only this BAM: a torrent of one size
    member_dir = os.path.join(data, set_name, "dir")
    os.makedirs(member_dir, exist_ok=True)
    for f in (name, name + ".bai"):
        link = os.path.join(member_dir, f)
        if not os.path.exists(link):
            try:
                os.link(os.path.join(data, f), link)
            except OSError:  # no hard links here: a copy, made once
                shutil.copyfile(os.path.join(data, f), link)
    mktorrent = shutil.which("mktorrent")
    torrent = os.path.join(data, f"run-{os.getpid()}.torrent")
    srv = LoggedNginx(data, tmp)
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GTIO_", "HTS_"))}
        g_env = {**env, "HTS_PATH": plugins + ":"}
        forms = [("gtio plugin", "gtio+" + srv.url(name), g_env),
                 ("htslib libcurl", srv.url(name), env)]
        if mktorrent:
            run_cmd([mktorrent, "-l", "16", "-w", srv.url(""), "-o", torrent,
                     os.path.join(data, set_name)], 120)
            forms.insert(1, ("gtio plugin, torrent member",
                             "gtio+" + srv.url(os.path.basename(torrent)) + "#dir/" + name, g_env))
        else:
            bench.skip(CASE, "gtio plugin, torrent member", "mktorrent not installed (`make deps`)")
        res = {}
        for tool, url, e in forms:
            r1 = measure(srv, url, names[:1], e, tmp, expect1, bench.repeat)
            rn = measure(srv, url, names, e, tmp, expect_n, bench.repeat)
            res[tool] = (r1, rn)
    finally:
        srv.stop()
        blocks.f.close()
        if os.path.exists(torrent):
            os.remove(torrent)

    k = n_regions - 1
    need_after = sum(need[1:]) / k
    detail0 = (f"BAM {human(size)}, {n_regions} regions of {span // 1000} kb, needed "
               f"{human(min(need))}–{human(max(need))} per region (mean after the first "
               f"{human(int(need_after))})")
    per = {}
    for tool, (r1, rn) in res.items():
        req1, b1, t1, log1 = r1
        reqn, bn, tn, logn = rn
        reqs = (reqn - req1) / k
        byts = (bn - b1) / k
        tpr = max(tn - t1, 0.0) / k
        per[tool] = (reqs, byts, tpr)
        oe = open_ended(logn)
        bench.row(CASE, tool, req1, "requests",
                  f"first query (header, index, 1 region): {human(b1)} sent; {t1:.3f} s"
                  + (f"; {detail0}" if tool == "gtio plugin" else ""))
        bench.row(CASE, tool, reqs, "requests/region",
                  f"after the first; {human(int(byts))} sent per region = {byts / need_after:.1f}× needed; "
                  f"{tpr * 1000:.1f} ms per region; {oe} of {reqn} requests open-ended")
    g, c = per["gtio plugin"], per["htslib libcurl"]
    r1g = res["gtio plugin"][0][0]
    bench.target("htslib: requests per region after the first", g[0], "≤ 2", g[0] <= 2, "{:.2f}")
    bench.target("htslib: bytes per region / needed", g[1] / need_after, "≤ 3×", g[1] / need_after <= 3)
    bench.target("htslib: first query requests", r1g, "≤ 5", r1g <= 5, "{:.0f}")
    if "gtio plugin, torrent member" in res:
        r1t = res["gtio plugin, torrent member"][0][0]
        bench.target("htslib: first query requests, torrent member", r1t, "≤ 5", r1t <= 5, "{:.0f}")
    bench.target("htslib: time per region gtio / libcurl", g[2] / c[2] if c[2] > 0 else None,
                 "≤ 1.0×", c[2] > 0 and g[2] / c[2] <= 1.0)
    bench.target("htslib: bytes per region gtio / libcurl", g[1] / c[1] if c[1] > 0 else None,
                 "≤ 0.25×", c[1] > 0 and g[1] / c[1] <= 0.25)
    bench.htslib_logs = {t: (r[0][3], r[1][3]) for t, r in res.items()}


if __name__ == "__main__":
    import argparse
    import tempfile

    ap = argparse.ArgumentParser(description="run the htslib bench case alone")
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--log", action="store_true", help="print the access log lines")
    a = ap.parse_args()

    class Alone:
        smoke = a.smoke
        repeat = max(1, int(os.environ.get("BENCH_REPEAT", 1 if a.smoke else 3)))
        data_dir = os.path.abspath(os.environ.get("BENCH_DATA", os.path.join(ROOT, "target/bench-data")))
        notes, rows, targets = [], [], []

        def row(self, *r):
            self.rows.append(r)

        def target(self, name, ratio, want, ok, fmt="{:.2f}×"):
            self.targets.append((name, "n/a" if ratio is None else fmt.format(ratio), want,
                                 "PASS" if ok else "MISS"))

        def skip(self, case, tool, why):
            self.rows.append((case, tool, None, "", f"skipped: {why}"))

    b = Alone()
    b.tmp = tempfile.mkdtemp(prefix="gtio-bench-htslib-")
    t0 = time.perf_counter()
    try:
        run(b)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    for r in b.rows:
        print(*[f"{x:.2f}" if isinstance(x, float) else x for x in r], sep=" | ")
    for t in b.targets:
        print(*t, sep=" | ")
    for n in b.notes:
        print("note:", n)
    if a.log:
        for tool, (l1, ln) in getattr(b, "htslib_logs", {}).items():
            print(f"--- {tool}: first query")
            for line in l1:
                print(*line)
            print(f"--- {tool}: {len(ln)} requests for all regions")
            for line in ln:
                print(*line)
    print(f"{time.perf_counter() - t0:.1f} s")
