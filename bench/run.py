#!/usr/bin/env python3
"""`make bench` / `make bench-smoke`: gtio side by side with curl, aria2c and
fsspec against one nginx on loopback, in one run.

    run.py [--smoke] [--bin target/bench/gtio_bench] [--out bench/results.md]

Environment (sizes in bytes, or with a K/M/G suffix):
    BENCH_SIZE       sequential and torrent file (1G; smoke 8M)
    BENCH_PY_SIZE    file for the Python cases (256M; smoke 8M)
    BENCH_RAND_N     cold random reads, sync and async (2000; smoke 50)
    BENCH_PY_RAND_N  random reads in the Python cases (300; smoke 20)
    BENCH_HITS       cache-hit reads (2000000; smoke 20000)
    BENCH_REPEAT     runs per measurement, best one reported (3; smoke 1)
    BENCH_DATA       where data files are generated once and reused
                     (target/bench-data)
    BENCH_SKIP       comma list of nginx,aria2c,mktorrent,fsspec to treat as
                     missing (tests the fallbacks)
    BENCH_ONLY       comma list of cases to run (seq,random,hits,python,
                     torrent and the names of bench/cases/*.py, e.g. mount);
                     the report then goes to target/bench/results-only.md
                     unless --out is given, so bench/results.md keeps the
                     figures of a whole run

Only the standard library is needed; fsspec (from .venv) is optional. curl
is required; nginx, aria2c, mktorrent and fsspec are optional: a missing one
skips its column with a note (nginx falls back to `gtio serve`, mktorrent to
`gtio create`). Exit status: 0 whatever the PASS/MISS figures; 1 when gtio
returns wrong bytes or fails; 2 when the harness itself cannot run.

More cases live in bench/cases/*.py, one module per area, found at start-up:
each defines ORDER (an int; the core cases here are 10-50), run(bench) which
adds rows and targets through bench.row/bench.target/bench.skip, and
optionally METHOD, a list of lines for the Method section.
"""

import argparse
import importlib.util
import os
import shutil
import sys
import tempfile
import time

from harness import (ROOT, MIB, GtioFailure, HarnessError, Server, ensure_data, env_size,
                     human, kv, machine, run, shm_dir, version, write_offsets)

def load_cases():
    """The modules of bench/cases/, as (name, module), in ORDER."""
    d = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases")
    out = []
    for f in sorted(os.listdir(d)) if os.path.isdir(d) else []:
        if f.endswith(".py") and not f.startswith("_"):
            spec = importlib.util.spec_from_file_location(f"bench_case_{f[:-3]}", os.path.join(d, f))
            m = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(m)
            out.append((f[:-3], m))
    return sorted(out, key=lambda nm: nm[1].ORDER)


class Bench:
    def __init__(self, args):
        self.a = args
        self.extra = load_cases()
        self.smoke = args.smoke
        self.notes = []
        self.rows = []  # (case, tool, figure, unit, detail)
        self.targets = []  # (name, ratio text, target text, PASS/MISS/n/a)
        self.failures = []
        self.t_budget = 60 if self.smoke else 600
        self.gtio_bench = os.path.abspath(args.bin)
        self.gtio_cli = os.path.join(ROOT, "target/release/gtio")
        self.lib = os.path.join(ROOT, "target/release/libgtio.so")
        # BENCH_SKIP=aria2c,mktorrent,nginx,fsspec: act as if missing (to test the harness)
        self.skip_tools = set(filter(None, os.environ.get("BENCH_SKIP", "").split(",")))
        self.only = set(filter(None, os.environ.get("BENCH_ONLY", "").split(",")))
        self.curl = shutil.which("curl")
        self.aria2c = None if "aria2c" in self.skip_tools else shutil.which("aria2c")
        self.mktorrent = None if "mktorrent" in self.skip_tools else shutil.which("mktorrent")
        self.size = env_size("BENCH_SIZE", 8 * MIB if self.smoke else 1 << 30)
        self.py_size = env_size("BENCH_PY_SIZE", 8 * MIB if self.smoke else 256 * MIB)
        self.rand_n = int(os.environ.get("BENCH_RAND_N", 50 if self.smoke else 2000))
        self.py_rand_n = int(os.environ.get("BENCH_PY_RAND_N", 20 if self.smoke else 300))
        self.hits = int(os.environ.get("BENCH_HITS", 20000 if self.smoke else 2000000))
        self.repeat = max(1, int(os.environ.get("BENCH_REPEAT", 1 if self.smoke else 3)))
        self.data_dir = os.path.abspath(
            os.environ.get("BENCH_DATA", os.path.join(ROOT, "target/bench-data"))
        )

    # -- helpers ---------------------------------------------------------

    def row(self, case, tool, figure, unit, detail=""):
        detail = "; ".join(p for p in detail.split("; ") if p.strip())
        self.rows.append((case, tool, figure, unit, detail))

    def target(self, name, ratio, want, ok, fmt="{:.2f}×"):
        if ratio is None:
            self.targets.append((name, "n/a", want, "n/a"))
        else:
            # Smoke sizes are too small for a ratio to mean anything: the
            # figure is shown, no verdict is given.
            verdict = "-" if self.smoke else ("PASS" if ok else "MISS")
            self.targets.append((name, fmt.format(ratio), want, verdict))

    def gtio(self, mode, uri, *opts, timeout=None, want_hash=None):
        """Run gtio_bench BENCH_REPEAT times (a fresh process each: cold) and
        return the best run, with `spread` = the range over all runs. Any
        failure or wrong bytes in any run is a GtioFailure."""
        cmd = [self.gtio_bench, mode, uri, *map(str, opts)]
        runs = []
        for _ in range(self.repeat):
            try:
                _, out, err, _ = run(cmd, timeout or self.t_budget)
            except (RuntimeError, TimeoutError) as e:
                raise GtioFailure(f"gtio_bench {mode}: {e}") from e
            r = kv(out.strip().splitlines()[-1] if out.strip() else "")
            if int(r.get("mismatches", 0)):
                raise GtioFailure(f"gtio_bench {mode}: {r['mismatches']} reads returned wrong bytes")
            if want_hash and r.get("hash") != want_hash:
                raise GtioFailure(f"gtio_bench {mode}: hash {r.get('hash')} != {want_hash} "
                                  "(wrong bytes)")
            runs.append(r)
        key = "ops_s" if "ops_s" in runs[0] else "seconds"
        vals = [float(r[key]) for r in runs]
        best = runs[vals.index(max(vals) if key == "ops_s" else min(vals))]
        best["spread"] = self.spread(vals, key == "ops_s")
        return best

    def spread(self, vals, higher_better):
        if len(vals) < 2:
            return ""
        fmt = (lambda v: f"{v:,.0f}") if higher_better else (lambda v: f"{v:.3f}")
        return f"best of {len(vals)}, range {fmt(min(vals))}–{fmt(max(vals))}"

    def best_wall(self, cmd, timeout=None, parse=None):
        """Best (min) of BENCH_REPEAT runs of a baseline tool: (seconds, spread).
        parse(stdout) gives the figure; default the process wall time."""
        vals = []
        for _ in range(self.repeat):
            w, out, _, _ = run(cmd, timeout or self.t_budget)
            vals.append(parse(out) if parse else w)
        return min(vals), self.spread(vals, False)

    def skip(self, case, tool, why):
        self.row(case, tool, None, "", f"skipped: {why}")

    # -- cases -----------------------------------------------------------

    def case_seq(self):
        case = f"sequential {human(self.size)}"
        r = self.gtio("seq", self.url, timeout=self.t_budget, want_hash=self.hash)
        if int(r["bytes"]) != self.size:
            raise GtioFailure(f"sequential read: {r['bytes']} bytes, expected {self.size}")
        g = float(r["seconds"])
        self.seq_cfg = r
        self.row(case, "gtio (C, gtio_read 1 MiB)", g, "s",
                 f"{float(r['mib_s']):.0f} MiB/s; verify hash {float(r['hash_s']):.3f} s excluded; "
                 f"{r['spread']}")

        # curl: its own %{time_total} (transfer incl. connect; no process start).
        def curl_time(out):
            t, n = out.split()
            if int(n) != self.size:
                raise HarnessError(f"curl downloaded {n} bytes, expected {self.size}")
            return float(t)

        c, sp = self.best_wall([self.curl, "-s", "-o", "/dev/null", "-w",
                                "%{time_total} %{size_download}", self.url], parse=curl_time)
        self.row(case, "curl -o /dev/null", c, "s", f"{self.size / MIB / c:.0f} MiB/s; {sp}")
        self.target("sequential time vs curl", g / c, "≤ 1.0×", g / c <= 1.0)
        # Reference: curl when it has to put the bytes somewhere (tmpfs file).
        d = shm_dir(self.notes)
        try:
            c2, sp = self.best_wall([self.curl, "-s", "-o", os.path.join(d, "out.bin"), "-w",
                                     "%{time_total} %{size_download}", self.url], parse=curl_time)
        finally:
            shutil.rmtree(d, ignore_errors=True)
        self.row(case, "curl -o tmpfs file (reference)", c2, "s",
                 f"{self.size / MIB / c2:.0f} MiB/s; bytes land in /dev/shm; {sp}")
        if self.aria2c:
            d = shm_dir(self.notes)
            try:
                w, sp = self.best_wall([self.aria2c, "-x8", "-s8", "-k1M", "--allow-overwrite=true",
                                        "-q", "--file-allocation=none", "-d", d, "-o", "out.bin",
                                        self.url])
            finally:
                shutil.rmtree(d, ignore_errors=True)
            self.row(case, "aria2c -x8 -s8 -k1M → tmpfs", w, "s",
                     f"{self.size / MIB / w:.0f} MiB/s; process wall time, writes to /dev/shm; {sp}")
            self.aria2_seq = w
        else:
            self.skip(case, "aria2c", "aria2c not installed")
        peak = int(r["peak_rss_kib"]) * 1024
        cache = int(r["cfg_cache_bytes"])
        self.row("peak RSS of the sequential read", "gtio VmHWM", peak / MIB, "MiB",
                 f"cache_bytes {human(cache)}, readahead_max {human(int(r['cfg_readahead']))}")
        self.target("peak RSS vs cache_bytes + 32 MiB", (peak - cache) / MIB,
                    "≤ +32 MiB", peak <= cache + 32 * MIB, fmt="{:+.1f} MiB")

    def curl_ranges(self, offs, length, cfg_path):
        with open(cfg_path, "w") as f:
            for i, off in enumerate(offs):
                if i:
                    f.write("next\n")
                f.write(f'url = "{self.url}"\nrange = "{off}-{off + length - 1}"\n'
                        'output = "/dev/null"\nsilent\n')

    def curl_loop_time(self, cfg, one_cfg, extra):
        """Wall time of one curl process over `cfg`, minus that of a process
        doing one request (start-up, connect): the time of the request loop."""
        w1 = min(run([self.curl, *extra, "-K", one_cfg], 60)[0] for _ in range(3))
        wn, sp = self.best_wall([self.curl, *extra, "-K", cfg])
        return max(wn - w1, 1e-6), wn, w1, sp

    def case_random(self):
        length = 4096
        offs_path = os.path.join(self.tmp, "offsets.txt")
        offs = write_offsets(offs_path, self.size, self.rand_n, length, 1)
        n = len(offs)
        cfg = os.path.join(self.tmp, "curl-ranges.cfg")
        one = os.path.join(self.tmp, "curl-one.cfg")
        self.curl_ranges(offs, length, cfg)
        self.curl_ranges(offs[:1], length, one)
        common = ("--offsets", offs_path, "--local", self.path, "--len", length)

        case = f"cold random 4 KiB, sync, {n} reads"
        r = self.gtio("rand", self.url, *common, "--block", 4096)
        g = float(r["ops_s"])
        self.row(case, "gtio pread, block_size 4 KiB (tuned)", g, "ops/s",
                 f"p50 {float(r['lat_p50_us']):.0f} µs, p99 {float(r['lat_p99_us']):.0f} µs; "
                 f"{r['spread']}")
        rd = self.gtio("rand", self.url, *common)
        self.row(case, f"gtio pread, block_size {human(int(rd['cfg_block_size']))} (default)",
                 float(rd["ops_s"]), "ops/s",
                 f"p50 {float(rd['lat_p50_us']):.0f} µs, p99 {float(rd['lat_p99_us']):.0f} µs")
        loop, wn, w1, sp = self.curl_loop_time(cfg, one, [])
        c = (n - 1) / loop
        self.row(case, "curl, serial ranges on 1 keep-alive conn", c, "ops/s",
                 f"one process, `next` per range; wall {wn:.3f} s − {w1:.3f} s for a 1-request run; "
                 f"wall {sp}")
        # Targets are judged at gtio's defaults; the tuned row is information.
        gd = float(rd["ops_s"])
        self.notes.append(f"cold random sync with 4 KiB blocks (tuned): {g / c:.2f}× curl serial")
        self.target("cold random sync vs curl serial", gd / c, "≥ 1.0×", gd / c >= 1.0)

        case = f"cold random 4 KiB, async QD16, {n} reads"
        r = self.gtio("async", self.url, *common, "--block", 4096, "--qd", 16)
        g = float(r["ops_s"])
        self.row(case, "gtio pread_async ×16, one ring, block 4 KiB (tuned)", g, "ops/s",
                 f"poll()+gtio_poll; {r['spread']}")
        rd = self.gtio("async", self.url, *common, "--qd", 16)
        self.row(case, f"gtio pread_async ×16, block {human(int(rd['cfg_block_size']))} (default)",
                 float(rd["ops_s"]), "ops/s", "")
        par = ["--parallel", "--parallel-max", "16", "--parallel-immediate"]
        loop, wn, w1, sp = self.curl_loop_time(cfg, one, par)
        c = (n - 1) / loop
        self.row(case, "curl --parallel --parallel-max 16 --parallel-immediate", c, "ops/s",
                 f"wall {wn:.3f} s − {w1:.3f} s for a 1-request run; wall {sp}")
        gd = float(rd["ops_s"])
        self.notes.append(f"cold random async QD16 with 4 KiB blocks (tuned): {g / c:.2f}× curl --parallel")
        self.target("cold random async QD16 vs curl parallel", gd / c, "≥ 1.2×", gd / c >= 1.2)

    def case_hits(self):
        case = f"cache-hit 4 KiB pread, {self.hits} reads, 1 thread"
        warm = min(16 * MIB, self.size)
        r = self.gtio("hits", self.url, "--hits", self.hits, "--warm", warm)
        ops = float(r["ops_s"])
        self.row(case, "gtio pread (hit)", ops, "ops/s",
                 f"p50 {float(r['lat_p50_us']):.2f} µs, p99 {float(r['lat_p99_us']):.2f} µs "
                 f"(clock ~{float(r['clock_ns']):.0f} ns); warm {human(warm)}, default config; "
                 f"{r['spread']}")
        self.target("cache hits ops/s", ops / 1e6, "≥ 3.0 M/s", ops >= 3e6, fmt="{:.2f} M/s")

    def case_python(self):
        case_s = f"Python sequential {human(self.py_size)}"
        case_r = f"Python random 4 KiB, {self.py_rand_n} reads"
        py = os.path.join(ROOT, ".venv/bin/python")
        if not os.access(py, os.X_OK):
            py = sys.executable
            self.notes.append(f".venv missing: Python cases run with {py}")
        env = dict(os.environ, GTIO_LIBRARY=self.lib,
                   PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep
                   + os.environ.get("PYTHONPATH", ""))
        url = self.py_url
        offs_path = os.path.join(self.tmp, "py-offsets.txt")
        write_offsets(offs_path, self.py_size, self.py_rand_n, 4096, 2)
        script = os.path.join(ROOT, "bench/py_bench.py")
        res = {}
        for mode, ct, blk, label in (
            ("gtio-seq", "", 0, "gtio: io.BufferedReader(ds.raw()).read(1 MiB)"),
            ("fsspec-seq", "default", 0, "fsspec HTTPFileSystem, default cache"),
            ("fsspec-seq", "readahead", 0, "fsspec HTTPFileSystem, cache_type=readahead"),
            ("gtio-rand", "", 4096, "gtio: BufferedReader(ds.raw()) seek+read, block_size 4 KiB (tuned)"),
            ("gtio-rand", "", 0, "gtio: same, default config"),
            ("fsspec-rand", "default", 0, "fsspec HTTPFileSystem, default cache"),
            ("fsspec-rand", "readahead", 0, "fsspec HTTPFileSystem, cache_type=readahead"),
            ("fsspec-rand", "bytes", 4096, "fsspec HTTPFileSystem, block_size 4 KiB (tuned)"),
        ):
            if "fsspec" in self.skip_tools and mode.startswith("fsspec"):
                self.skip(case_s if mode.endswith("seq") else case_r, label, "BENCH_SKIP")
                continue
            case = case_s if mode.endswith("seq") else case_r
            cmd = [py, script, mode, url, self.py_path, "--offsets", offs_path]
            if ct:
                cmd += ["--cache-type", ct]
            if blk:
                cmd += ["--block", str(blk)]
            runs, why = [], None
            for _ in range(self.repeat):
                try:
                    _, out, err, rc = run(cmd, self.t_budget, env=env, check=False)
                except TimeoutError as e:
                    if mode.startswith("gtio"):
                        raise GtioFailure(f"python {mode}: {e}") from e
                    why = str(e)
                    break
                if rc == 3:
                    why = err.strip().splitlines()[-1] if err.strip() else "import failed"
                    break
                r = kv(out.strip().splitlines()[-1]) if out.strip() else {}
                if rc != 0 or r.get("ok") != "1":
                    msg = f"python {mode} exited {rc}: {err.strip()[-600:]}"
                    if mode.startswith("gtio"):
                        raise GtioFailure(msg)
                    why = msg
                    break
                runs.append(r)
            if why:
                self.skip(case, label, why)
                continue
            key = "mib_s" if mode.endswith("seq") else "ops_s"
            vals = [float(x[key]) for x in runs]
            r = runs[vals.index(max(vals))]
            if mode.endswith("seq"):
                fig, unit = float(r["mib_s"]), "MiB/s"
                detail = f"{float(r['seconds']):.3f} s (CRC-32 {float(r['verify_s']):.3f} s excluded)"
            else:
                fig, unit = float(r["ops_s"]), "ops/s"
                detail = f"{float(r['seconds']):.3f} s"
            detail += f"; {r.get('desc', '')}"
            if len(vals) > 1:
                detail += f"; {self.spread(vals, True)}"
            self.row(case, label, fig, unit, detail)
            res[(mode, ct, blk)] = fig
        # Targets: both sides at their defaults (what a user gets). Tuned
        # against tuned (4 KiB blocks on both sides) is reported as a note.
        for kind, want in (("seq", 2.0), ("rand", 10.0)):
            g = res.get((f"gtio-{kind}", "", 0))
            f = res.get((f"fsspec-{kind}", "default", 0))
            name = f"Python {'sequential' if kind == 'seq' else 'random'} vs fsspec (defaults)"
            if g is None or f is None:
                self.target(name, None, f"≥ {want:g}×", False)
            else:
                self.target(name, g / f, f"≥ {want:g}×", g / f >= want)
        gt, ft = res.get(("gtio-rand", "", 4096)), res.get(("fsspec-rand", "bytes", 4096))
        if gt and ft:
            self.notes.append(f"Python random, both tuned to 4 KiB blocks: gtio {gt / ft:.2f}× fsspec")

    def case_torrent(self):
        case = f"torrent via web seed, {human(self.size)}"
        name = os.path.basename(self.path)
        tpath = os.path.join(self.server.tdir, "data.torrent")
        seed = self.url
        if self.mktorrent:
            run([self.mktorrent, "-l", "20", "-w", seed, "-o", tpath, self.path], self.t_budget)
            made = "mktorrent -l 20 -w URL"
        else:
            run([self.gtio_cli, "create", self.path, "--web-seed", seed, "-o", tpath], self.t_budget)
            made = "gtio create (mktorrent missing)"
            self.notes.append("mktorrent not installed: the torrent was made by `gtio create`")
        r = self.gtio("torrent", self.server.t_url + "data.torrent", timeout=self.t_budget,
                      want_hash=self.hash)
        g = float(r["seconds"])
        self.row(case, "gtio (C, open .torrent URL, gtio_read 1 MiB)", g, "s",
                 f"{float(r['mib_s']):.0f} MiB/s, SHA-1 checked; {made}; {r['spread']}")
        if not self.aria2c:
            self.skip(case, "aria2c", "aria2c not installed")
            self.target("torrent time vs aria2c", None, "≤ 0.5×", False)
            return
        vals = []
        for _ in range(self.repeat):
            d = shm_dir(self.notes)
            try:
                w, _, _, _ = run([self.aria2c, "-q", "--seed-time=0", "--enable-dht=false",
                                  "--bt-enable-lpd=false", "--enable-peer-exchange=false",
                                  "--allow-overwrite=true", "--file-allocation=none", "-x8", "-s8",
                                  "-d", d, "-T", tpath], self.t_budget)
                got = os.path.getsize(os.path.join(d, name))
            finally:
                shutil.rmtree(d, ignore_errors=True)
            if got != self.size:
                raise HarnessError(f"aria2c wrote {got} bytes, expected {self.size}")
            vals.append(w)
        w = min(vals)
        self.row(case, "aria2c -T (web seed only) → tmpfs", w, "s",
                 f"{self.size / MIB / w:.0f} MiB/s; process wall time, -x8 -s8, no DHT/LPD/PEX; "
                 f"{self.spread(vals, False)}")
        self.target("torrent time vs aria2c", g / w, "≤ 0.5×", g / w <= 0.5)

    # -- driver ----------------------------------------------------------

    def main(self):
        if not self.curl:
            raise HarnessError("curl is required (apt-get install curl, or `make deps`)")
        for p in (self.gtio_bench, self.lib):
            if not os.path.exists(p):
                raise HarnessError(f"{p} is missing (make build)")
        if not self.aria2c:
            self.notes.append("aria2c not installed: its columns are skipped (`make deps`)")
        t_start = time.perf_counter()
        self.path, self.hash = ensure_data(self.data_dir, self.size, self.gtio_bench)
        self.py_path, _ = ensure_data(self.data_dir, self.py_size, self.gtio_bench)
        self.tmp = tempfile.mkdtemp(prefix="gtio-bench-")
        self.server = None
        try:
            self.server = Server(self.data_dir, self.tmp, self.gtio_cli, self.notes,
                                 use_nginx="nginx" not in self.skip_tools)
            self.url = self.server.root_url + os.path.basename(self.path)
            self.py_url = self.server.root_url + os.path.basename(self.py_path)
            cases = [(10, "seq", self.case_seq), (20, "random", self.case_random),
                     (30, "hits", self.case_hits), (40, "python", self.case_python),
                     (50, "torrent", self.case_torrent)]
            cases += [(m.ORDER, name, (lambda m=m: m.run(self))) for name, m in self.extra]
            if self.only:
                unknown = self.only - {name for _, name, _ in cases}
                if unknown:
                    raise HarnessError(f"BENCH_ONLY: no case named {', '.join(sorted(unknown))}")
                cases = [c for c in cases if c[1] in self.only]
            for _, name, case in sorted(cases, key=lambda c: c[0]):
                t = time.perf_counter()
                case()
                print(f"  [{name} done in {time.perf_counter() - t:.1f} s]", flush=True)
        finally:
            if self.server:
                self.server.stop()
            shutil.rmtree(self.tmp, ignore_errors=True)
        self.elapsed = time.perf_counter() - t_start
        self.report()

    def tools(self):
        fs = aio = "missing"
        py = os.path.join(ROOT, ".venv/bin/python")
        if os.access(py, os.X_OK):
            fs = version([py, "-c", "import fsspec; print(fsspec.__version__)"], r"\S+")
            aio = version([py, "-c", "import aiohttp; print(aiohttp.__version__)"], r"\S+")
        else:
            py = sys.executable
        return {
            "origin": f"{self.server.kind} {self.server.version}",
            "curl": version(["curl", "--version"]),
            "aria2c": version(["aria2c", "--version"]),
            "mktorrent": version(["mktorrent", "-h"]),
            "python": version([py, "--version"]),
            "fsspec": fs,
            "aiohttp": aio,
            "gtio": getattr(self, "seq_cfg", {}).get("gtio_version", "?"),
            "cc": version([os.environ.get("CC", "cc"), "--version"]),
        }

    def report(self):
        mach = machine(self.tools())
        cfg = getattr(self, "seq_cfg", {})
        lines = []
        lines.append("# gtio benchmark results" + (" (smoke sizes)" if self.smoke else ""))
        lines.append("")
        lines.append(f"`make bench{'-smoke' if self.smoke else ''}`, "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S %Z')}, one run, {self.elapsed:.0f} s. "
                     "Everything against one origin on 127.0.0.1.")
        lines.append("")
        lines.append("## Machine")
        lines.append("")
        for k, v in mach.items():
            lines.append(f"- {k}: {v}")
        lines.append("")
        lines.append("## gtio configuration")
        lines.append("")
        if cfg:
            lines.append(f"Defaults unless a row says otherwise: cache_bytes {human(int(cfg['cfg_cache_bytes']))}, "
                         f"block_size {human(int(cfg['cfg_block_size']))}, workers {cfg['cfg_workers']}, "
                         f"max_conns_per_host {cfg['cfg_conns']}, readahead_max_bytes "
                         f"{human(int(cfg['cfg_readahead']))}. Random-read rows marked \"block_size 4 KiB\" "
                         "set it with gtio_lib_init so a cold 4 KiB read fetches 4 KiB, like curl.")
        lines.append("")
        lines.append("## Results")
        lines.append("")
        lines.append("| case | tool | result | notes |")
        lines.append("|---|---|---:|---|")
        for case, tool, fig, unit, detail in self.rows:
            if fig is None:
                res = "—"
            elif unit == "s":
                res = f"{fig:.3f} s"
            elif unit == "ops/s":
                res = f"{fig:,.0f} ops/s"
            else:
                res = f"{fig:,.1f} {unit}"
            lines.append(f"| {case} | {tool} | {res} | {detail} |")
        lines.append("")
        lines.append("## Targets")
        lines.append("")
        lines.append("| target | measured | want | |")
        lines.append("|---|---:|---|---|")
        for name, ratio, want, verdict in self.targets:
            lines.append(f"| {name} | {ratio} | {want} | {verdict} |")
        lines.append("")
        lines.append("## Method")
        lines.append("")
        lines.extend([
            "- Origin: nginx, `daemon off; master_process off; access_log off; sendfile on;`, "
            "one worker, keepalive_requests 1000000, on a free loopback port; the data files "
            "are random bytes generated once under target/bench-data and served from the page cache.",
            "- gtio figures come from bench/gtio_bench.c (-O2 against include/gtio.h, clock_gettime "
            "around the read loop only: open/HEAD/metainfo fetch excluded). Every gtio byte is "
            "checked (sequential/torrent: a 64-bit hash vs the local file, its time excluded; "
            "random: memcmp with the local file after the loop).",
            "- Cold = a fresh process (empty gtio cache) per measurement; nginx's page cache is warm "
            "for every tool alike.",
            f"- Every measurement, gtio's and the baselines', is run {self.repeat}× (BENCH_REPEAT) "
            "and the best run is reported, with the range of all runs in the notes: the machine "
            "is shared, so single runs are noisy.",
            "- curl sequential: `curl -s -o /dev/null`, its own %{time_total}.",
            "- curl random: one curl process, a -K config with one `url`/`range` block per read "
            "separated by `next`, so all transfers reuse one keep-alive connection (serial) or a "
            "pool of 16 (`--parallel --parallel-max 16 --parallel-immediate`). Loop time = wall "
            "time of that process minus the best of 3 wall times of a process doing 1 request "
            "(start-up, config parsing, connect); ops/s = (N−1)/loop.",
            "- aria2c: process wall time (includes its start-up and, for the torrent, its SHA-1 "
            "checks); output to a tmpfs dir under /dev/shm, deleted afterwards; "
            "--file-allocation=none.",
            "- Python: one process per row; the gtio package via ctypes (sequential: default config; "
            "random: gtio.init(block_size=4096) like the C rows, plus a default-config row where a "
            "cold 4 KiB read fetches a 1 MiB block); fsspec HTTPFileSystem (aiohttp) with its "
            "default cache, cache_type=\"readahead\" (both block_size 5 MiB) and, for random "
            "reads, block_size 4 KiB. Ratio targets compare defaults with defaults (gtio default config vs fsspec default cache, gtio default config vs curl); tuned rows and tuned-vs-tuned ratios are information.",
        ])
        for _, m in self.extra:
            lines.extend(getattr(m, "METHOD", []))
        if self.notes:
            lines.append("")
            lines.append("## Notes")
            lines.append("")
            for n in dict.fromkeys(self.notes):
                lines.append(f"- {n}")
        text = "\n".join(lines) + "\n"
        os.makedirs(os.path.dirname(os.path.abspath(self.a.out)), exist_ok=True)
        with open(self.a.out, "w") as f:
            f.write(text)
        # Console: the two tables.
        print()
        w = max(len(r[0]) for r in self.rows) if self.rows else 10
        t = max(len(r[1]) for r in self.rows) if self.rows else 10
        last = None
        for case, tool, fig, unit, detail in self.rows:
            if fig is None:
                res = "skipped"
            elif unit == "s":
                res = f"{fig:10.3f} s"
            elif unit == "ops/s":
                res = f"{fig:10,.0f} ops/s"
            else:
                res = f"{fig:10,.1f} {unit}"
            print(f"{case if case != last else '':<{w}}  {tool:<{t}}  {res:<18} {detail}")
            last = case
        print()
        if self.smoke:
            print("  smoke run: checks the harness and gtio's bytes; it does not judge targets (make bench does)")
        for name, ratio, want, verdict in self.targets:
            print(f"  {verdict:<5} {name:<40} {ratio:>12}   want {want}")
        for n in dict.fromkeys(self.notes):
            print(f"  note: {n}")
        print(f"\nwritten: {os.path.relpath(self.a.out, ROOT)} ({self.elapsed:.0f} s)")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--smoke", action="store_true", help="tiny sizes; checks the harness")
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/bench/gtio_bench"))
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    if a.out is None:
        if a.smoke:
            a.out = os.path.join(ROOT, "target/bench/results-smoke.md")
        elif os.environ.get("BENCH_ONLY"):
            a.out = os.path.join(ROOT, "target/bench/results-only.md")
        else:
            a.out = os.path.join(ROOT, "bench/results.md")
    b = Bench(a)
    try:
        b.main()
    except GtioFailure as e:
        print(f"bench: FAIL: {e}", file=sys.stderr)
        return 1
    except (HarnessError, RuntimeError, TimeoutError, OSError) as e:
        print(f"bench: harness error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
