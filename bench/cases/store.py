"""The persistent piece store (cache_dir): what a hit, a cold read and a
second process cost, against plain reads of a local file (issue 12's
speed targets).

Rows (gtio_bench `seq`, 1 MiB gtio_read over the whole stream, clock around
the read loop only; every byte checked against the local file's hash):
  - store hit: a fresh process reading a plain object whose every block is
    in the store, vs a plain pread loop (1 MiB) over the local file in the
    page cache;
  - cold read with a store (an empty cache_dir per run) vs without one;
  - a second process reading a torrent (SHA-1 checked on load) that another
    process fetched, vs the same plain pread loop.

BENCH_STORE_SIZE sets the size (256M; smoke 2M).
"""

import os
import shutil
import time

from harness import MIB, GtioFailure, ensure_data, env_size, human, kv
from harness import run as run_cmd

ORDER = 60

METHOD = [
    "- Store: gtio_bench `seq` with GTIO_CACHE_DIR set (a fresh process per run; the store "
    "directory on the same file system as the data, page cache warm). \"Store hit\" reads a "
    "plain object after earlier runs stored every block (its CRC-32C checked on load); "
    "\"second process\" reads a torrent another process fetched (SHA-1 checked on load). "
    "The local baseline is a pread loop with a 1 MiB buffer over the data file (best of "
    "BENCH_REPEAT, after one warming pass). Cold with a store: an empty cache_dir per run; "
    "the writes go on after the read loop (the process waits for them at close, outside the "
    "clock).",
]


def pread_seconds(path):
    """One pass of pread(1 MiB) over `path` into one buffer."""
    fd = os.open(path, os.O_RDONLY)
    try:
        buf = bytearray(MIB)
        mv = memoryview(buf)
        off = 0
        t = time.perf_counter()
        while True:
            n = os.preadv(fd, [mv], off)
            if n <= 0:
                break
            off += n
        return time.perf_counter() - t
    finally:
        os.close(fd)


def stored_bytes(cache):
    total = 0
    for d, _, files in os.walk(os.path.join(cache, "gtio-store-v1", "pieces")):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(d, f))
            except OSError:
                pass
    return total


def seq(bench, mode, uri, want_hash, cache=None):
    """One gtio_bench run; its key=value record."""
    env = dict(os.environ)
    env.pop("GTIO_CACHE_DIR", None)
    if cache:
        env["GTIO_CACHE_DIR"] = cache
        env["GTIO_CACHE_DIR_BYTES"] = str(64 << 30)
    try:
        _, out, _, _ = run_cmd([bench.gtio_bench, mode, uri], bench.t_budget, env=env)
    except (RuntimeError, TimeoutError) as e:
        raise GtioFailure(f"gtio_bench {mode} with a store: {e}") from e
    r = kv(out.strip().splitlines()[-1] if out.strip() else "")
    if r.get("hash") != want_hash:
        raise GtioFailure(f"gtio_bench {mode} with a store: hash {r.get('hash')} != "
                          f"{want_hash} (wrong bytes)")
    return r


def best(bench, f):
    vals = [f() for _ in range(bench.repeat)]
    return min(vals), bench.spread(vals, False)


def fill(bench, mode, uri, want_hash, cache, size):
    """Read until the store holds every piece (a save is skipped when the
    writer's queue is full, so one cold run may store only part)."""
    for _ in range(8):
        seq(bench, mode, uri, want_hash, cache)
        if stored_bytes(cache) >= size:
            return True
    return False


def run(bench):
    size = env_size("BENCH_STORE_SIZE", 2 * MIB if bench.smoke else 256 * MIB)
    # The data file comes from the same generator as the core cases'.
    path, want = ensure_data(bench.data_dir, size, bench.gtio_bench)
    url = bench.server.root_url + os.path.basename(path)
    tmp = os.path.join(bench.tmp, "store")
    os.makedirs(tmp, exist_ok=True)
    case = f"persistent store, {human(size)}"

    pread_seconds(path)  # warm the page cache
    local, lsp = best(bench, lambda: pread_seconds(path))
    bench.row(case, "local file: pread 1 MiB loop (baseline)", local, "s",
              f"{size / MIB / local:.0f} MiB/s; {lsp}")

    # A store hit: every block of the plain object stored by earlier runs.
    hit_dir = os.path.join(tmp, "hit")
    if not fill(bench, "seq", url, want, hit_dir, size):
        bench.notes.append("store: the plain object was not wholly stored after 8 runs")
    hit, hsp = best(bench, lambda: float(seq(bench, "seq", url, want, hit_dir)["seconds"]))
    bench.row(case, "gtio store hit (plain object, CRC-32C)", hit, "s",
              f"{size / MIB / hit:.0f} MiB/s; {hsp}")
    bench.target("store hit vs local pread", hit / local, "≤ 1.25×", hit / local <= 1.25)

    # Cold: no store vs an empty store per run.
    cold, csp = best(bench, lambda: float(seq(bench, "seq", url, want)["seconds"]))
    bench.row(case, "gtio cold, no store", cold, "s", f"{size / MIB / cold:.0f} MiB/s; {csp}")
    n = [0]

    def cold_store():
        n[0] += 1
        d = os.path.join(tmp, f"cold-{n[0]}")
        try:
            return float(seq(bench, "seq", url, want, d)["seconds"])
        finally:
            shutil.rmtree(d, ignore_errors=True)

    cs, cssp = best(bench, cold_store)
    bench.row(case, "gtio cold, empty store", cs, "s", f"{size / MIB / cs:.0f} MiB/s; {cssp}")
    bench.target("cold read with a store vs without", cs / cold, "≤ 1.05×", cs / cold <= 1.05)

    # A second process reading a torrent another one fetched.
    tname = f"store-{size}.torrent"
    tpath = os.path.join(bench.server.tdir, tname)
    run_cmd([bench.gtio_cli, "-q", "create", path, "--web-seed", url, "-o", tpath], bench.t_budget)
    turl = bench.server.t_url + tname
    t_dir = os.path.join(tmp, "torrent")
    if not fill(bench, "torrent", turl, want, t_dir, size):
        bench.notes.append("store: the torrent was not wholly stored after 8 runs")
    sec, ssp = best(bench, lambda: float(seq(bench, "torrent", turl, want, t_dir)["seconds"]))
    bench.row(case, "gtio second process, torrent from the store (SHA-1)", sec, "s",
              f"{size / MIB / sec:.0f} MiB/s; made by gtio create; {ssp}")
    bench.target("second process from the store vs local files", sec / local, "≤ 1.5×",
                 sec / local <= 1.5)
    shutil.rmtree(tmp, ignore_errors=True)
