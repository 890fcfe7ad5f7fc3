"""`gtio mount` (cli/src/mount/): ordinary reads of the mounted dataset
against the library's own calls on the same data, in the same run (issue 13's
speed targets; docs/mount.md discusses the figures).

Rows:
  - sequential: a plain 1 MiB read loop (os.readv into one buffer) over a file
    of a fresh mount, for a plain object and for a torrent with a web seed,
    both on the bench's origin; against gtio_bench `seq` / `torrent`
    (gtio_read 1 MiB) on the same URIs;
  - random 4 KiB: O_DIRECT preads at the core cases' offsets on a fresh mount
    of the plain object; against gtio_bench `rand` (gtio_pread) on the same
    offsets, both at gtio's default settings;
  - `ls -lR` of a 10,000-file torrent on a fresh mount (wall time).

Every byte read through the mount is checked: the sequential file is hashed
afterwards by `gtio_bench hash` (the hash `seq` prints) on the same mount,
and every random read is compared with the local file.

BENCH_MOUNT_SIZE sets the sequential file (BENCH_SIZE: 1G; smoke 8M) and
BENCH_MOUNT_FILES the file count of the listing (10000; smoke 500). Skipped,
with the reason printed, where /dev/fuse or fusermount3 is absent.
"""

import mmap
import os
import shutil
import subprocess
import time

from harness import (MIB, GtioFailure, die_with_parent, ensure_data, env_size, human, kv,
                     write_offsets)
from harness import run as run_cmd

ORDER = 90

METHOD = [
    "- Mount (bench/cases/mount.py): `gtio mount` at default settings of the same URI as "
    "the gtio_bench row it is compared with, a fresh mount per run, so the kernel's page "
    "cache and gtio's cache are both empty (a new mount has new inodes; unmounting drops "
    "their pages). The gtio_bench runs and the mount runs alternate (BENCH_REPEAT rounds), "
    "so the machine's load falls on both sides of a ratio. Sequential: os.readv of 1 MiB "
    "into one buffer from the first read to EOF, the clock around the loop only (mounting "
    "and open excluded, like gtio_bench's open); the file is then hashed by `gtio_bench "
    "hash` on the same mount and must match. Random 4 KiB: the file opened with O_DIRECT "
    "(a page-aligned mmap buffer), so every read reaches the mount as made, with no page "
    "cache and no kernel readahead in between (posix_fadvise cannot stop readahead, and "
    "dropping caches needs root and touches the whole machine); the latency of each "
    "os.preadv, compared with the local file outside the clock; the core case's offsets, "
    "gtio_bench `rand` at the default block_size on the other side. The reference row "
    "reads the same offsets a third time on the same mount (all gtio cache hits). `ls -lR`: "
    "the wall time of `ls -lR MOUNT` (its output counted: every file must be listed) on "
    "a fresh mount of a `gtio create` torrent of 100 directories of small files.",
]


def usable():
    """None when a mount can be made here, else why not."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is absent (no FUSE in this kernel or container)"
    if not shutil.which("fusermount3"):
        return "fusermount3 is not installed (Debian's fuse3; `make deps`)"
    return None


def mounted(mp):
    try:
        with open("/proc/self/mounts") as f:
            return any(line.split(" ")[1] == mp for line in f)
    except OSError:
        return False


class Mount:
    """`gtio mount SRC MP` for the life of a with-block. Always unmounts and
    ends the process, whatever happened inside; the process also gets SIGTERM
    (which unmounts) if this driver dies first."""

    def __init__(self, bench, src, tag):
        self.bench = bench
        self.mp = os.path.join(bench.tmp, f"mnt-{tag}")
        os.makedirs(self.mp, exist_ok=True)
        self.log = os.path.join(bench.tmp, f"mount-{tag}.log")
        self.src = src
        self.proc = None

    def __enter__(self):
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen(
                [self.bench.gtio_cli, "-q", "mount", self.src, self.mp],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                preexec_fn=lambda: die_with_parent_sig(15),
            )
        deadline = time.monotonic() + 30
        while not mounted(self.mp):
            if self.proc.poll() is not None:
                self.close()
                raise GtioFailure(f"gtio mount {self.src} exited {self.proc.returncode}: "
                                  f"{self.tail()}")
            if time.monotonic() > deadline:
                self.close()
                raise GtioFailure(f"gtio mount {self.src}: not mounted after 30 s: {self.tail()}")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc):
        self.close()

    def tail(self):
        try:
            with open(self.log) as f:
                return f.read().strip()[-600:]
        except OSError:
            return ""

    def close(self):
        if mounted(self.mp):
            r = subprocess.run(["fusermount3", "-u", self.mp], capture_output=True, timeout=20)
            if r.returncode != 0 and mounted(self.mp):
                # Busy (a reader still open) or a dead mount: detach lazily.
                subprocess.run(["fusermount3", "-u", "-z", self.mp], capture_output=True,
                               timeout=20)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        try:
            os.rmdir(self.mp)
        except OSError:
            pass


def die_with_parent_sig(sig):
    """preexec_fn: `sig` to the child when the driver dies (SIGTERM makes
    gtio mount unmount itself, so a killed run leaves no dead mount)."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        die_with_parent()


def readahead_kb(mp):
    """The mount's kernel readahead (its bdi's read_ahead_kb), as text."""
    dev = os.stat(mp).st_dev
    try:
        with open(f"/sys/class/bdi/{os.major(dev)}:{os.minor(dev)}/read_ahead_kb") as f:
            return f.read().strip()
    except OSError:
        return "?"


def read_all(path, size):
    """Seconds of a 1 MiB os.readv loop over `path` (clock around the loop)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        mv = memoryview(bytearray(MIB))
        got = 0
        t = time.perf_counter()
        while True:
            n = os.readv(fd, [mv])
            if n <= 0:
                break
            got += n
        secs = time.perf_counter() - t
    finally:
        os.close(fd)
    if got != size:
        raise GtioFailure(f"mount: read {got} bytes of {path}, expected {size}")
    return secs


def gtio_bench(bench, *args):
    try:
        _, out, _, _ = run_cmd([bench.gtio_bench, *map(str, args)], bench.t_budget)
    except (RuntimeError, TimeoutError) as e:
        raise GtioFailure(f"gtio_bench {args[0]}: {e}") from e
    return kv(out.strip().splitlines()[-1] if out.strip() else "")


def best(bench, f):
    """The least of BENCH_REPEAT results of f, with their range."""
    vals = [f() for _ in range(bench.repeat)]
    return min(vals), bench.spread(vals, False)


def interleaved(bench, *fs):
    """BENCH_REPEAT rounds of each of `fs` in turn, so that the load of the
    shared machine falls on both sides of a ratio alike: a list of results
    per function."""
    out = [[] for _ in fs]
    for _ in range(bench.repeat):
        for res, f in zip(out, fs):
            res.append(f())
    return out


def sequential(bench, label, mode, uri, name, size, want):
    case = f"mount sequential {human(size)}"

    def lib():
        r = gtio_bench(bench, mode, uri)
        if r.get("hash") != want:
            raise GtioFailure(f"gtio_bench {mode}: hash {r.get('hash')} != {want}")
        return float(r["seconds"])

    n, ra = [0], []

    def through_mount():
        n[0] += 1
        with Mount(bench, uri, f"{mode}-{n[0]}") as m:
            path = os.path.join(m.mp, name)
            secs = read_all(path, size)
            h = gtio_bench(bench, "hash", path).get("hash")
            if h != want:
                raise GtioFailure(f"mount: {path} hashes to {h}, expected {want} (wrong bytes)")
            ra.append(readahead_kb(m.mp))
        return secs

    libs, mounts = interleaved(bench, lib, through_mount)
    g, s = min(libs), min(mounts)
    bench.row(case, f"gtio_read 1 MiB ({label})", g, "s",
              f"{size / MIB / g:.0f} MiB/s; gtio_bench {mode}; {bench.spread(libs, False)}")
    bench.row(case, f"mount: os.readv 1 MiB loop ({label})", s, "s",
              f"{size / MIB / s:.0f} MiB/s; fresh mount per run; kernel readahead "
              f"{'/'.join(sorted(set(ra)))} KiB; {bench.spread(mounts, False)}")
    bench.target(f"mount sequential vs gtio_read ({label})", g / s, "≥ 0.50×", g / s >= 0.5)


def percentile(sorted_vals, q):
    return sorted_vals[min(len(sorted_vals) - 1, int(q * len(sorted_vals)))]


def direct_pass(fd, offs, local):
    """(p50 µs, p99 µs, reads/s over the summed latencies) of one O_DIRECT
    pass of 4 KiB preads; every read compared with the local bytes."""
    buf = mmap.mmap(-1, 4096)
    lat = []
    clock = time.perf_counter_ns
    for k, o in enumerate(offs):
        t = clock()
        n = os.preadv(fd, [buf], o)
        lat.append(clock() - t)
        if buf[:n] != local[k]:
            raise GtioFailure(f"mount: 4 KiB read at {o} returned wrong bytes")
    total = sum(lat)
    lat.sort()
    return percentile(lat, 0.5) / 1e3, percentile(lat, 0.99) / 1e3, len(lat) / (total / 1e9)


def random_reads(bench, url, name, path, size):
    offs_path = os.path.join(bench.tmp, "mount-offsets.txt")
    offs = write_offsets(offs_path, size, bench.rand_n, 4096, 1)
    with open(path, "rb") as f:
        local = [(f.seek(o), f.read(4096))[1] for o in offs]
    case = f"mount cold random 4 KiB, {len(offs)} reads"

    def lib():
        r = gtio_bench(bench, "rand", url, "--offsets", offs_path, "--local", path, "--len", 4096)
        if int(r.get("mismatches", 0)):
            raise GtioFailure(f"gtio_bench rand: {r['mismatches']} reads returned wrong bytes")
        return float(r["lat_p50_us"]), float(r["lat_p99_us"]), float(r["ops_s"])

    n = [0]

    def through_mount():
        n[0] += 1
        with Mount(bench, url, f"rand-{n[0]}") as m:
            fd = os.open(os.path.join(m.mp, name), os.O_RDONLY | os.O_DIRECT)
            try:
                cold = direct_pass(fd, offs, local)
                # The first repeat of an offset still misses (a block read
                # right-sized once is fetched whole the second time); the
                # third pass is all gtio cache hits: the mount's own cost.
                direct_pass(fd, offs, local)
                warm = direct_pass(fd, offs, local)
            finally:
                os.close(fd)
        return cold, warm

    libs, mounts = interleaved(bench, lib, through_mount)
    g = min(libs)
    bench.row(case, "gtio_pread (default block_size)", g[0], "µs p50",
              f"p99 {g[1]:.0f} µs, {g[2]:,.0f} ops/s; "
              f"{bench.spread([x[0] for x in libs], False)}")
    cold = min(x[0] for x in mounts)
    bench.row(case, "mount: O_DIRECT os.preadv 4 KiB", cold[0], "µs p50",
              f"p99 {cold[1]:.0f} µs, {cold[2]:,.0f} ops/s; fresh mount per run; "
              f"{bench.spread([x[0][0] for x in mounts], False)}")
    warm = min(x[1] for x in mounts)
    bench.row(case, "mount: the same reads again, gtio cache hits (reference)", warm[0],
              "µs p50", f"p99 {warm[1]:.0f} µs: the round trip through FUSE and the mount; "
              f"{bench.spread([x[1][0] for x in mounts], False)}")
    bench.target("mount random 4 KiB p50 vs gtio_pread", cold[0] / g[0], "≤ 1.5×",
                 cold[0] / g[0] <= 1.5)


def listing(bench, n_files):
    # Under the origin's root, so the torrent's web seed really serves it
    # (the mount refuses a torrent with no source; ls reads no data anyway).
    src = os.path.join(bench.server.tdir, "many")
    per_dir = max(1, n_files // 100)
    for i in range(0, n_files):
        d = os.path.join(src, f"d{i // per_dir:03d}")
        if i % per_dir == 0:
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}.txt"), "w") as f:
            f.write(f"{i}\n")
    tpath = os.path.join(bench.tmp, "many.torrent")
    run_cmd([bench.gtio_cli, "-q", "create", src, "--web-seed", bench.server.t_url, "-o", tpath],
            bench.t_budget)
    case = f"mount ls -lR, {n_files:,} files"
    n = [0]

    def ls():
        n[0] += 1
        with Mount(bench, tpath, f"ls-{n[0]}") as m:
            t = time.perf_counter()
            p = subprocess.run(["ls", "-lR", m.mp], capture_output=True, text=True,
                               timeout=bench.t_budget)
            secs = time.perf_counter() - t
        if p.returncode != 0:
            raise GtioFailure(f"ls -lR of the mount exited {p.returncode}: {p.stderr[-400:]}")
        files = sum(1 for line in p.stdout.splitlines() if line.startswith("-r--r--r--"))
        if files != n_files:
            raise GtioFailure(f"ls -lR of the mount listed {files} files, expected {n_files}")
        return secs

    try:
        s, sp = best(bench, ls)
    finally:
        shutil.rmtree(src, ignore_errors=True)
    bench.row(case, "mount: ls -lR (wall, fresh mount)", s, "s",
              f"100 directories; torrent by gtio create; {sp}")
    bench.target(f"mount ls -lR of {n_files:,} files", s, "≤ 1 s", s <= 1.0, fmt="{:.3f} s")


def run(bench):
    why = usable()
    if why:
        print(f"  mount: skipped: {why}", flush=True)
        for case in ("mount sequential", "mount cold random 4 KiB", "mount ls -lR"):
            bench.skip(case, "gtio mount", why)
        return
    size = env_size("BENCH_MOUNT_SIZE", bench.size)
    n_files = int(os.environ.get("BENCH_MOUNT_FILES", 500 if bench.smoke else 10000))
    path, want = ensure_data(bench.data_dir, size, bench.gtio_bench)
    name = os.path.basename(path)
    url = bench.server.root_url + name

    sequential(bench, "plain object", "seq", url, name, size, want)
    tname = f"mount-{size}.torrent"
    tpath = os.path.join(bench.server.tdir, tname)
    run_cmd([bench.gtio_cli, "-q", "create", path, "--web-seed", url, "-o", tpath],
            bench.t_budget)
    sequential(bench, "torrent, web seed", "torrent", bench.server.t_url + tname, name, size,
               want)
    random_reads(bench, url, name, path, size)
    listing(bench, n_files)
