"""The swarm on loopback: gtio reading tracker-only torrents from 3 libtorrent
seeders (python3-libtorrent) announced by opentracker, beside aria2c
downloading the same torrent from the same seeders (issue 11, "Speed").

Rows: cold 16 KiB random reads (p50/p99), open to first byte, a sequential
read of the BENCH_SIZE torrent with its redundant bytes from `gtio cat
--stats`, and the whole BENCH_PY_SIZE torrent against aria2c. Seeders start
in seed mode (no hash check of their data) with DHT/LSD/UPnP/NAT-PMP off,
bound to 127.0.0.1; the torrents announce to the local opentracker only.
Missing libtorrent, opentracker or mktorrent skip the rows with a note.

Alone: `python3 bench/cases/swarm.py [--smoke]` runs just this module.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from harness import MIB, GtioFailure, HarnessError, free_port, human, shm_dir, write_offsets  # noqa: E402
from harness import run as run_cmd  # noqa: E402

ORDER = 60
METHOD = [
    "Swarm rows: 3 libtorrent seeders (python3-libtorrent, seed mode, 127.0.0.1, no DHT/LSD/UPnP/"
    "NAT-PMP/uTP) and opentracker (whitelist) on loopback; torrents by mktorrent, announce-only "
    "(no web seed). Each gtio figure is a fresh process (cold cache, cold connections): random "
    "reads are `gtio_bench rand` on the torrent (the first reads also pay the announce and the "
    "connects), open to first byte is one such read, the sequential and whole-torrent figures are "
    "`gtio cat --stats` wall times (process start and open included), aria2c is `-T` with "
    "DHT/LPD/PEX off writing to tmpfs.",
]

PY = "/usr/bin/python3"
PIECE_LOG2 = 18  # 256 KiB pieces: a cold 16 KiB read fetches one

LT_SEED = r"""
import sys, time, libtorrent as lt
s = lt.session({
    'listen_interfaces': '127.0.0.1:0',
    'enable_dht': False, 'enable_lsd': False, 'enable_upnp': False, 'enable_natpmp': False,
    'enable_outgoing_utp': False, 'enable_incoming_utp': False,
    'allow_multiple_connections_per_ip': True,
    'announce_to_all_trackers': True, 'announce_to_all_tiers': True,
})
save = sys.argv[1]
hs = [s.add_torrent({'ti': lt.torrent_info(t), 'save_path': save,
                     'flags': lt.torrent_flags.seed_mode}) for t in sys.argv[2:]]
t0 = time.time()
while not all(h.status().is_seeding for h in hs):
    if time.time() - t0 > 60:
        print('NOT SEEDING', flush=True); sys.exit(1)
    time.sleep(0.02)
print('READY', s.listen_port(), flush=True)
sys.stdin.read()
"""

INFO_HASH = "import sys, libtorrent as lt; print(lt.torrent_info(sys.argv[1]).info_hash())"


def have_libtorrent():
    try:
        return subprocess.run([PY, "-c", "import libtorrent"], capture_output=True,
                              timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


class Swarm:
    """opentracker and 3 libtorrent seeders of `torrents` (data in `save`)."""

    def __init__(self, tmp, save, torrents, port):
        self.procs = []
        self.port = port
        d = tempfile.mkdtemp(prefix="gtio-bench-ot-", dir=tmp)
        os.chmod(d, 0o755)
        self.hashes = [run_cmd([PY, "-c", INFO_HASH, t], 30)[1].strip() for t in torrents]
        with open(os.path.join(d, "whitelist.txt"), "w") as f:
            f.write("".join(h + "\n" for h in self.hashes))
        cmd = ["opentracker", "-i", "127.0.0.1", "-p", str(port), "-P", str(port), "-d", d,
               "-w", "whitelist.txt"]
        if os.geteuid() == 0:
            cmd += ["-u", "nobody"]
        self.procs.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))
        for _ in range(3):
            p = subprocess.Popen([PY, "-c", LT_SEED, save, *torrents], stdin=subprocess.PIPE,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self.procs.append(p)
        for p in self.procs[1:]:
            line = p.stdout.readline()
            if not line.startswith("READY"):
                raise HarnessError(f"a libtorrent seeder did not start: {line.strip()!r}")
        deadline = time.time() + 30
        while not all(self.seeders(h) >= 3 for h in self.hashes):
            if time.time() > deadline:
                raise HarnessError("opentracker does not show the 3 seeders")
            time.sleep(0.1)

    def seeders(self, info_hash):
        q = "".join(f"%{info_hash[i:i + 2]}" for i in range(0, 40, 2))
        try:
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{self.port}/scrape?info_hash={q}", timeout=2) as r:
                body = r.read()
        except OSError:
            return 0
        m = re.search(rb"8:completei(\d+)e", body)
        return int(m.group(1)) if m else 0

    def stop(self):
        for p in self.procs:
            p.kill()
            p.wait()


def mktorrent(path, out, announce):
    run_cmd(["mktorrent", "-l", str(PIECE_LOG2), "-a", announce, "-o", out, path], 600)


def gtio_cat(bench, torrent, size):
    """`gtio cat --stats` of `torrent`: (wall s, fetched, redundant) from its stats line."""
    w, out, err, _ = run_bytes([bench.gtio_cli, "cat", "--stats", torrent], bench.t_budget)
    if out != size:
        raise GtioFailure(f"gtio cat {torrent}: {out} bytes, expected {size}")
    line = next((l for l in err.splitlines() if l.startswith("stats:")), "")
    return w, line


def run_bytes(cmd, timeout):
    """Run cmd with stdout counted, not kept: (wall, stdout bytes, stderr, rc)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         stdin=subprocess.DEVNULL)
    n = 0
    deadline = time.time() + timeout
    while True:
        b = p.stdout.read(1 << 20)
        if not b:
            break
        n += len(b)
        if time.time() > deadline:
            p.kill()
            raise GtioFailure(f"{cmd[1]} timed out after {timeout} s")
    err = p.stderr.read().decode(errors="replace")
    rc = p.wait()
    w = time.perf_counter() - t0
    if rc != 0:
        raise GtioFailure(f"{' '.join(cmd)}: exit {rc}: {err.strip()[-300:]}")
    return w, n, err, rc


def parse_human(s):
    m = re.fullmatch(r"([\d.]+) ?(GiB|MiB|KiB|B)", s.strip())
    if not m:
        return None
    return float(m.group(1)) * {"GiB": 1 << 30, "MiB": 1 << 20, "KiB": 1 << 10, "B": 1}[m.group(2)]


def stat_field(line, key):
    """`redundant 1.2 MiB` / `fetched 1 GiB` from the --stats line, in bytes."""
    m = re.search(rf"{key} ([\d.]+ ?(?:GiB|MiB|KiB|B))", line)
    return parse_human(m.group(1)) if m else None


def run_case(bench):
    missing = [t for t, ok in (("python3-libtorrent", have_libtorrent()),
                               ("opentracker", shutil.which("opentracker")),
                               ("mktorrent", shutil.which("mktorrent"))) if not ok]
    case = "swarm (3 libtorrent seeders, opentracker)"
    if missing:
        bench.notes.append(f"swarm rows skipped: {', '.join(missing)} not installed (`make deps`)")
        bench.skip(case, "gtio", f"{', '.join(missing)} missing")
        return
    big, big_size = bench.path, os.path.getsize(bench.path)
    mid = bench.py_path if os.path.getsize(bench.py_path) != big_size else big
    mid_size = os.path.getsize(mid)
    if os.path.dirname(mid) != os.path.dirname(big):
        raise HarnessError("the data files are in two directories")
    port = free_port()
    announce = f"http://127.0.0.1:{port}/announce"
    tdir = tempfile.mkdtemp(prefix="gtio-bench-swarm-", dir=bench.tmp)
    t_big = os.path.join(tdir, "big.torrent")
    t_mid = os.path.join(tdir, "mid.torrent")
    mktorrent(big, t_big, announce)
    torrents = [t_big]
    if mid != big:
        mktorrent(mid, t_mid, announce)
        torrents.append(t_mid)
    else:
        t_mid = t_big
    sw = Swarm(bench.tmp, os.path.dirname(big), torrents, port)
    try:
        measure(bench, sw, t_big, big, big_size, t_mid, mid, mid_size)
    finally:
        sw.stop()


def measure(bench, sw, t_big, big, big_size, t_mid, mid, mid_size):
    uri = "file://" + t_big
    # Cold random 16 KiB reads.
    n = bench.rand_n
    offs = os.path.join(bench.tmp, "swarm-offsets.txt")
    write_offsets(offs, big_size, n, 16384, 7)
    r = bench.gtio("rand", uri, "--offsets", offs, "--local", big, "--len", 16384)
    p50, p99 = float(r["lat_p50_us"]) / 1000, float(r["lat_p99_us"]) / 1000
    case = f"swarm: cold random 16 KiB, {n} reads, {human(big_size)} torrent"
    bench.row(case, "gtio pread (3 libtorrent seeders)", float(r["ops_s"]), "ops/s",
              f"p50 {p50:.2f} ms, p99 {p99:.2f} ms, max {float(r['lat_max_us']) / 1000:.1f} ms; "
              f"256 KiB pieces; {r['spread']}")
    bench.target("swarm cold random 16 KiB p50", p50, "≤ 2 ms", p50 <= 2, fmt="{:.2f} ms")
    bench.target("swarm cold random 16 KiB p99", p99, "≤ 10 ms", p99 <= 10, fmt="{:.2f} ms")
    # Open to first byte: one read in a fresh process (announce, connects, unchoke).
    one = os.path.join(bench.tmp, "swarm-one.txt")
    write_offsets(one, big_size, 1, 16384, 8)
    vals = []
    for _ in range(bench.repeat):
        r1 = bench.gtio("rand", uri, "--offsets", one, "--local", big, "--len", 16384)
        vals.append(float(r1["lat_max_us"]) / 1000)
    ftb = min(vals)
    bench.row("swarm: open to first byte", "gtio first pread after gtio_open_uri", ftb, "ms",
              "cold connections: announce, 3 connects, handshakes, unchoke, one piece; "
              + bench.spread(vals, False))
    bench.target("swarm open to first byte", ftb, "≤ 50 ms", ftb <= 50, fmt="{:.1f} ms")
    # Sequential read of the big torrent.
    w, line = gtio_cat(bench, t_big, big_size)
    red = stat_field(line, "redundant") or 0.0
    pct = 100.0 * red / big_size
    mib_s = big_size / MIB / w
    bench.row(f"swarm: sequential {human(big_size)} torrent", "gtio cat --stats (peers only)",
              mib_s, "MiB/s", f"wall {w:.2f} s incl. open; redundant {pct:.2f} %; {line[7:]}")
    bench.target("swarm sequential", mib_s, "≥ 400 MiB/s", mib_s >= 400, fmt="{:.0f} MiB/s")
    bench.target("swarm sequential redundant bytes", pct, "≤ 2 %", pct <= 2, fmt="{:.2f} %")
    # The whole mid torrent: gtio vs aria2c from the same seeders.
    case = f"swarm: whole {human(mid_size)} torrent"
    gw, gline = gtio_cat(bench, t_mid, mid_size)
    bench.row(case, "gtio cat --stats > pipe", gw, "s",
              f"{mid_size / MIB / gw:.0f} MiB/s; {gline[7:]}")
    if not bench.aria2c:
        bench.skip(case, "aria2c", "aria2c not installed")
        bench.target("swarm whole torrent time vs aria2c", None, "≤ 1.0×", False)
        return
    avals = []
    for _ in range(bench.repeat):
        d = shm_dir(bench.notes)
        try:
            aw, _, _, _ = run_cmd([bench.aria2c, "-q", "--seed-time=0", "--enable-dht=false",
                                   "--enable-dht6=false", "--bt-enable-lpd=false",
                                   "--enable-peer-exchange=false", "--allow-overwrite=true",
                                   "--file-allocation=none", f"--listen-port={free_port()}",
                                   "-d", d, "-T", t_mid], bench.t_budget)
            got = os.path.getsize(os.path.join(d, os.path.basename(mid)))
        finally:
            shutil.rmtree(d, ignore_errors=True)
        if got != mid_size:
            raise HarnessError(f"aria2c wrote {got} bytes, expected {mid_size}")
        avals.append(aw)
    aw = min(avals)
    bench.row(case, "aria2c -T (same seeders) → tmpfs", aw, "s",
              f"{mid_size / MIB / aw:.0f} MiB/s; no DHT/LPD/PEX; {bench.spread(avals, False)}")
    bench.target("swarm whole torrent time vs aria2c", gw / aw, "≤ 1.0×", gw / aw <= 1.0)


def run(bench):
    run_case(bench)


if __name__ == "__main__":
    # This module alone, through bench/run.py's Bench (its rows and report).
    import argparse
    import importlib.util
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    spec = importlib.util.spec_from_file_location("bench_run", os.path.join(here, "run.py"))
    br = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(br)
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--bin", default=os.path.join(br.ROOT, "target/bench/gtio_bench"))
    ap.add_argument("--out", default=os.path.join(br.ROOT, "target/bench/results-swarm.md"))
    a = ap.parse_args()
    b = br.Bench(a)
    b.extra = []
    b.path, b.hash = br.ensure_data(b.data_dir, b.size, b.gtio_bench)
    b.py_path, _ = br.ensure_data(b.data_dir, b.py_size, b.gtio_bench)
    b.tmp = tempfile.mkdtemp(prefix="gtio-bench-")
    t0 = time.perf_counter()
    try:
        run(b)
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)
    for row in b.rows:
        print(row)
    for t in b.targets:
        print(t)
    for n in b.notes:
        print("note:", n)
    print(f"elapsed {time.perf_counter() - t0:.1f} s")
