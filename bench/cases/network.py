"""Network-like origin: every tool through bench/netproxy.py, which adds a
first-byte delay per request and caps each connection's bandwidth in front
of the same nginx, in the same run.

Environment:
    BENCH_NET_DELAY_MS  first-byte delay per request (20)
    BENCH_NET_RATE      bytes/s per connection (25M)
    BENCH_NET_SIZE      sequential file (256M; smoke 2M)
    BENCH_NET_RAND_N    cold random 4 KiB reads, sync and QD16 (500; smoke 10)
    BENCH_NET_PY_N      Python random reads (50; smoke 4)

Each figure is one run (a fresh process: cold): the times are set by the
delay and the rate, not by the machine, so repeats add little but minutes.
"""

import os
import shutil
import subprocess
import sys

from harness import (ROOT, MIB, GtioFailure, HarnessError, env_size, ensure_data, human, kv,
                     shm_dir, write_offsets)
from harness import run as shell  # this module's own `run` is the case

ORDER = 60

METHOD = [
    "Network-like origin (`bench/cases/network.py`): bench/netproxy.py between every tool and "
    "nginx holds each request head for the first-byte delay and paces each connection's answers "
    "to the per-connection rate (defaults 20 ms, 25 MB/s); one run per figure.",
]


class Proxy:
    def __init__(self, upstream_port, delay_ms, rate):
        script = os.path.join(ROOT, "bench/netproxy.py")
        self.proc = subprocess.Popen(
            [sys.executable, script, "--upstream", f"127.0.0.1:{upstream_port}",
             "--delay-ms", str(delay_ms), "--rate", str(rate)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("port="):
            self.stop()
            raise HarnessError("bench/netproxy.py did not start")
        self.port = int(line.split("=", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def curl_cfg(path, url, offs, length):
    with open(path, "w") as f:
        for i, off in enumerate(offs):
            if i:
                f.write("next\n")
            f.write(f'url = "{url}"\nrange = "{off}-{off + length - 1}"\n'
                    'output = "/dev/null"\nsilent\n')


def python_row(bench, mode, url, local, offs_path, label, case):
    py = os.path.join(ROOT, ".venv/bin/python")
    if not os.access(py, os.X_OK):
        py = sys.executable
    env = dict(os.environ, GTIO_LIBRARY=bench.lib,
               PYTHONPATH=os.path.join(ROOT, "python") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [py, os.path.join(ROOT, "bench/py_bench.py"), mode, url, local, "--offsets", offs_path]
    try:
        _, out, err, rc = shell(cmd, bench.t_budget, env=env, check=False)
    except TimeoutError as e:
        if mode.startswith("gtio"):
            raise GtioFailure(f"python {mode}: {e}") from e
        bench.skip(case, label, str(e))
        return None
    r = kv(out.strip().splitlines()[-1]) if out.strip() else {}
    if rc != 0 or r.get("ok") != "1":
        msg = err.strip().splitlines()[-1] if err.strip() else f"exit {rc}"
        if mode.startswith("gtio") and rc != 3:
            raise GtioFailure(f"python {mode} exited {rc}: {err.strip()[-600:]}")
        bench.skip(case, label, msg)
        return None
    key = "mib_s" if mode.endswith("seq") else "ops_s"
    fig = float(r[key])
    bench.row(case, label, fig, "MiB/s" if key == "mib_s" else "ops/s",
              f"{float(r['seconds']):.3f} s; {r.get('desc', '')}")
    return fig


def run_cases(bench, proxy, delay_ms, rate):
    size = env_size("BENCH_NET_SIZE", 2 * MIB if bench.smoke else 256 * MIB)
    n = int(os.environ.get("BENCH_NET_RAND_N", 10 if bench.smoke else 500))
    py_n = int(os.environ.get("BENCH_NET_PY_N", 4 if bench.smoke else 50))
    path, want_hash = ensure_data(bench.data_dir, size, bench.gtio_bench)
    url = f"http://127.0.0.1:{proxy.port}/{os.path.basename(path)}"
    net = f"{delay_ms:g} ms, {rate / 1e6:g} MB/s per conn"

    # -- sequential ------------------------------------------------------
    case = f"network ({net}): sequential {human(size)}"
    r = bench.gtio("seq", url, want_hash=want_hash)
    if int(r["bytes"]) != size:
        raise GtioFailure(f"network sequential: {r['bytes']} bytes, expected {size}")
    g = float(r["seconds"])
    bench.row(case, "gtio (C, gtio_read 1 MiB, defaults)", g, "s", f"{size / MIB / g:.1f} MiB/s")

    def curl_time(out):
        t, got = out.split()
        if int(got) != size:
            raise HarnessError(f"curl downloaded {got} bytes, expected {size}")
        return float(t)

    c, _ = bench.best_wall([bench.curl, "-s", "-o", "/dev/null", "-w",
                            "%{time_total} %{size_download}", url], parse=curl_time)
    bench.row(case, "curl -o /dev/null", c, "s", f"{size / MIB / c:.1f} MiB/s")
    bench.target("network sequential: curl time / gtio time", c / g, "≥ 5×", c / g >= 5)
    if bench.aria2c:
        d = shm_dir(bench.notes)
        try:
            w, _ = bench.best_wall([bench.aria2c, "-x8", "-s8", "-k1M", "--allow-overwrite=true",
                                    "-q", "--file-allocation=none", "-d", d, "-o", "out.bin", url])
        finally:
            shutil.rmtree(d, ignore_errors=True)
        bench.row(case, "aria2c -x8 -s8 -k1M → tmpfs", w, "s",
                  f"{size / MIB / w:.1f} MiB/s; process wall time")
        bench.target("network sequential: aria2c -x8 time / gtio time", w / g, "≥ 1.2×",
                     w / g >= 1.2)
    else:
        bench.skip(case, "aria2c -x8", "aria2c not installed")
        bench.target("network sequential: aria2c -x8 time / gtio time", None, "≥ 1.2×", False)
    python_row(bench, "fsspec-seq", url, path, "", "fsspec HTTPFileSystem, default cache", case)

    # -- cold random 4 KiB -----------------------------------------------
    length = 4096
    offs_path = os.path.join(bench.tmp, "net-offsets.txt")
    offs = write_offsets(offs_path, size, n, length, 7)
    cfg, one = os.path.join(bench.tmp, "net-curl.cfg"), os.path.join(bench.tmp, "net-one.cfg")
    curl_cfg(cfg, url, offs, length)
    curl_cfg(one, url, offs[:1], length)
    common = ("--offsets", offs_path, "--local", path, "--len", length)

    case = f"network ({net}): cold random 4 KiB, sync, {n} reads"
    r = bench.gtio("rand", url, *common)
    bench.row(case, "gtio pread (defaults)", float(r["ops_s"]), "ops/s",
              f"p50 {float(r['lat_p50_us']) / 1000:.1f} ms, p99 {float(r['lat_p99_us']) / 1000:.1f} ms")
    loop, wn, w1, _ = bench.curl_loop_time(cfg, one, [])
    bench.row(case, "curl, serial ranges on 1 keep-alive conn", (n - 1) / loop, "ops/s",
              f"wall {wn:.3f} s − {w1:.3f} s for a 1-request run")
    bench.skip(case, "aria2c", "no range reads (aria2c downloads whole files)")

    case = f"network ({net}): cold random 4 KiB, async QD16, {n} reads"
    r = bench.gtio("async", url, *common, "--qd", 16)
    g = float(r["ops_s"])
    bench.row(case, "gtio pread_async ×16 (defaults)", g, "ops/s", "")
    par = ["--parallel", "--parallel-max", "16", "--parallel-immediate"]
    loop, wn, w1, _ = bench.curl_loop_time(cfg, one, par)
    bench.row(case, "curl --parallel --parallel-max 16", (n - 1) / loop, "ops/s",
              f"wall {wn:.3f} s − {w1:.3f} s for a 1-request run")
    bound = 16 / (delay_ms / 1000.0)
    bench.target(f"network random QD16 / latency bound (16 / {delay_ms:g} ms = {bound:.0f}/s)",
                 g / bound, "≥ 0.8×", g / bound >= 0.8)

    # -- Python random -----------------------------------------------------
    case = f"network ({net}): Python random 4 KiB, {py_n} reads"
    py_offs = os.path.join(bench.tmp, "net-py-offsets.txt")
    write_offsets(py_offs, size, py_n, length, 8)
    gp = python_row(bench, "gtio-rand", url, path, py_offs,
                    "gtio: BufferedReader(ds.raw()) seek+read, defaults", case)
    fp = None
    if "fsspec" not in bench.skip_tools:
        fp = python_row(bench, "fsspec-rand", url, path, py_offs,
                        "fsspec HTTPFileSystem, default cache", case)
    ok = gp is not None and fp is not None
    bench.target("network Python random vs fsspec", gp / fp if ok else None, "≥ 10×",
                 ok and gp / fp >= 10)


def run(bench):
    delay_ms = float(os.environ.get("BENCH_NET_DELAY_MS", "20"))
    rate = os.environ.get("BENCH_NET_RATE", "25M")
    from netproxy import parse_rate  # noqa: PLC0415
    proxy = Proxy(bench.server.port, delay_ms, rate)
    saved = bench.repeat
    bench.repeat = 1
    try:
        run_cases(bench, proxy, delay_ms, parse_rate(rate))
    finally:
        bench.repeat = saved
        proxy.stop()
