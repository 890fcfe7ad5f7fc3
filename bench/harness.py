"""Shared parts of the benchmark harness: process running, the origin server,
data files and machine facts. bench/run.py and every bench/cases/*.py use it."""

import os
import platform
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MIB = 1 << 20


class HarnessError(Exception):
    """The harness cannot run (exit 2)."""


class GtioFailure(Exception):
    """gtio failed or returned wrong bytes (exit 1)."""


def parse_size(s):
    m = re.fullmatch(r"\s*(\d+)\s*([KMGkmg]?)(i?[Bb])?\s*", s)
    if not m:
        raise HarnessError(f"bad size {s!r}")
    return int(m.group(1)) << {"": 0, "k": 10, "m": 20, "g": 30}[m.group(2).lower()]


def env_size(name, default):
    v = os.environ.get(name)
    return parse_size(v) if v else default


def human(n):
    for unit, sh in (("GiB", 30), ("MiB", 20), ("KiB", 10)):
        if n >= 1 << sh and n % (1 << (sh - 4)) == 0:
            return f"{n / (1 << sh):g} {unit}"
    return f"{n} B"


def kv(line):
    """Parse `k=v k='quoted v'` pairs (what gtio_bench and py_bench print)."""
    out = {}
    for m in re.finditer(r"(\w+)=('(?:[^'\\]|\\.)*'|\"[^\"]*\"|\S+)", line):
        v = m.group(2)
        out[m.group(1)] = v[1:-1] if v[:1] in "'\"" else v
    return out


def run(cmd, timeout, env=None, check=True):
    """Run cmd; returns (wall seconds, stdout, stderr, returncode)."""
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL
        )
    except subprocess.TimeoutExpired as e:
        raise TimeoutError(f"{cmd[0]} timed out after {timeout} s") from e
    wall = time.perf_counter() - t0
    if check and p.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[:3])}... exited {p.returncode}: {p.stderr.strip()[-800:]}"
        )
    return wall, p.stdout, p.stderr, p.returncode


def version(cmd, pattern=r"\d+\.\d+(\.\d+)?"):
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        m = re.search(pattern, p.stdout + p.stderr)
        return m.group(0) if m else "?"
    except (OSError, subprocess.TimeoutExpired):
        return "missing"


def die_with_parent():
    """preexec_fn: the server dies with the driver even if the driver is killed."""
    try:
        import ctypes  # noqa: PLC0415

        ctypes.CDLL(None, use_errno=True).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    except Exception:  # noqa: BLE001 - best effort (non-Linux)
        pass


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, secs=10):
    deadline = time.time() + secs
    while time.time() < deadline:
        if proc.poll() is not None:
            return False
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            time.sleep(0.02)
    return False


class Server:
    """nginx on a free loopback port serving the data dir."""

    NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {tmp}/cb;
    proxy_temp_path {tmp}/px;
    fastcgi_temp_path {tmp}/fc;
    uwsgi_temp_path {tmp}/uw;
    scgi_temp_path {tmp}/sc;
    types {{ application/octet-stream bin; application/x-bittorrent torrent; }}
    default_type application/octet-stream;
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""

    def __init__(self, root, tmp, gtio_cli, notes, use_nginx=True):
        self.tmp = tmp
        # per-run files (the .torrent) live in a subdir of the served root
        tname = f"run-{os.getpid()}"
        self.tdir = os.path.join(root, tname)
        os.makedirs(self.tdir, exist_ok=True)
        self.proc = None
        nginx = os.environ.get("GTIO_NGINX") or shutil.which("nginx") or "/usr/sbin/nginx"
        if use_nginx and os.access(nginx, os.X_OK):
            for _ in range(3):
                port = free_port()
                conf = os.path.join(tmp, "nginx.conf")
                with open(conf, "w") as f:
                    f.write(self.NGINX_CONF.format(tmp=tmp, port=port, root=root))
                proc = subprocess.Popen(
                    [nginx, "-p", tmp, "-e", os.path.join(tmp, "error.log"), "-c", conf],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
                if wait_port(port, proc):
                    self.proc, self.port, self.kind = proc, port, "nginx"
                    self.version = version([nginx, "-v"])
                    self.root_url = f"http://127.0.0.1:{port}/"
                    self.t_url = self.root_url + tname + "/"
                    return
                proc.kill()
                proc.wait()
            log = open(os.path.join(tmp, "error.log")).read()[-800:]
            notes.append(f"nginx did not start ({log.strip()}); using `gtio serve` instead")
        else:
            notes.append("nginx not found or skipped: the origin is `gtio serve` (`make deps` installs nginx)")
        # Fallback: the library's own demo origin.
        port = free_port()
        proc = subprocess.Popen(
            [gtio_cli, "serve", root, "--addr", f"127.0.0.1:{port}"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        if not wait_port(port, proc):
            proc.kill()
            raise HarnessError("neither nginx nor `gtio serve` could be started")
        self.proc, self.port, self.kind, self.version = proc, port, "gtio serve", "-"
        self.root_url = f"http://127.0.0.1:{port}/"
        self.t_url = self.root_url + tname + "/"

    def stop(self):
        shutil.rmtree(self.tdir, ignore_errors=True)
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def ensure_data(data_dir, size, gtio_bench):
    """data-SIZE.bin (random bytes, generated once) and its hash."""
    os.makedirs(data_dir, exist_ok=True)
    path = os.path.join(data_dir, f"data-{size}.bin")
    hpath = path + ".hash"
    if not (os.path.exists(path) and os.path.getsize(path) == size and os.path.exists(hpath)):
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            left = size
            while left:
                n = min(left, 4 * MIB)
                f.write(os.urandom(n))
                left -= n
        _, out, _, _ = run([gtio_bench, "hash", tmp], 300)
        os.replace(tmp, path)
        with open(hpath, "w") as f:
            f.write(kv(out)["hash"] + "\n")
    with open(hpath) as f:
        return path, f.read().strip()


def write_offsets(path, size, n, length, seed):
    r = random.Random(seed)
    slots = max(1, (size - length) // length)
    offs = [r.randrange(slots) * length for _ in range(n)]
    with open(path, "w") as f:
        f.write("\n".join(map(str, offs)) + "\n")
    return offs


def shm_dir(notes):
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    if base is None:
        notes.append("/dev/shm is not writable: aria2c writes to the default temp dir (disk)")
    return tempfile.mkdtemp(prefix="gtio-bench-aria2-", dir=base)


def machine(tools):
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = "?"
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                mem = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
    except OSError:
        pass
    try:
        load = open("/proc/loadavg").read().split()[:3]
        load = " ".join(load) + " (1/5/15 min, at the end of the run: other work on the machine skews figures)"
    except OSError:
        load = "?"
    d = {
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "memory": mem,
        "kernel": f"{platform.system()} {platform.release()}",
        "load average": load,
    }
    d.update(tools)
    return d
