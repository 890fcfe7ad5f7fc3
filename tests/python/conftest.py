"""Fixtures for the gtio Python tests: a real nginx and the data it serves.

One nginx per test session (``daemon off; master_process off``, every path in
a temporary directory, ``access_log off``) on a free 127.0.0.1 port serves a
data directory built here: random blobs, zip and tar archives made by the
standard library, and torrents made by ``mktorrent`` whose web seed is this
nginx. Locations:

- ``/``       the data directory, with nginx's range support;
- ``/auth/``  the same directory, only with ``Authorization: Bearer <AUTH_TOKEN>``,
  else 401;
- ``/noranges/`` the same directory, ranges ignored (200 and the whole body);
- ``/status/403/``, ``/status/410/`` that status for anything;
- ``/slow/``  the same directory at 40 KB/s per connection, so that a read
  is surely still in flight when a test cancels it.

The package is imported from ``python/`` of this checkout (ahead of any
installed copy); ``GTIO_LIBRARY`` picks the library.
"""

from __future__ import annotations

import ctypes
import io
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterator

import pytest

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "python"))

AUTH_TOKEN = "s3cret-token"
NGINX = os.environ.get("GTIO_NGINX", "/usr/sbin/nginx")


def run_in_fresh_process(script: str, server: "Server", blob: str) -> None:
    """Run `script` in a new Python process (for tests that change the
    library's process-wide state: init, fini, fork). It gets argv = [pkg dir,
    URL of `blob` on nginx, local path of `blob`] and must print "ok"."""
    import gtio

    pkg = os.path.dirname(os.path.dirname(gtio.__file__))
    p = subprocess.run(
        [sys.executable, "-c", script, pkg, server.url(blob), str(server.root / blob)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 0 and "ok" in p.stdout, p.stdout + p.stderr


def rand_bytes(n: int, seed: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(n)


@dataclass
class Server:
    """The running nginx and what it serves."""

    port: int
    root: Path
    blobs: Dict[str, bytes] = field(default_factory=dict)
    zip_members: Dict[str, bytes] = field(default_factory=dict)
    tar_members: Dict[str, bytes] = field(default_factory=dict)
    torrent_files: Dict[str, bytes] = field(default_factory=dict)
    single_torrent_data: bytes = b""
    token: str = AUTH_TOKEN

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pdeathsig() -> None:  # runs in the child before exec
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


NGINX_CONF = """\
daemon off;
master_process off;
worker_processes 1;
pid "{tmp}/nginx.pid";
error_log "{tmp}/error.log" warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    types {{
        application/zip zip;
        application/x-bittorrent torrent;
    }}
    client_body_temp_path "{tmp}/body";
    proxy_temp_path "{tmp}/proxy";
    fastcgi_temp_path "{tmp}/fastcgi";
    uwsgi_temp_path "{tmp}/uwsgi";
    scgi_temp_path "{tmp}/scgi";
    sendfile on;
    keepalive_requests 100000;
    server {{
        listen 127.0.0.1:{port};
        server_name _;
        root "{root}";
        location / {{
        }}
        location /noranges/ {{
            alias "{root}/";
            max_ranges 0;
        }}
        location /status/403/ {{
            return 403;
        }}
        location /status/410/ {{
            return 410;
        }}
        location /slow/ {{
            alias "{root}/";
            limit_rate 40k;
        }}
        location /auth/ {{
            alias "{root}/";
            if ($http_authorization != "Bearer {token}") {{
                return 401;
            }}
        }}
    }}
}}
"""


def _start_nginx(tmp: Path, root: Path) -> "tuple[subprocess.Popen[bytes], int]":
    if not os.access(NGINX, os.X_OK):
        pytest.exit(f"nginx not found at {NGINX} (run scripts/install-deps.sh)", 2)
    log = tmp / "error.log"
    for _ in range(3):
        port = _free_port()
        conf = tmp / "nginx.conf"
        conf.write_text(NGINX_CONF.format(tmp=tmp, root=root, port=port, token=AUTH_TOKEN))
        proc = subprocess.Popen(
            [NGINX, "-p", str(tmp), "-e", str(log), "-c", str(conf)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_pdeathsig,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return proc, port
            except OSError:
                time.sleep(0.02)
        proc.kill()
        proc.wait()
        text = log.read_text() if log.exists() else ""
        if "Address already in use" not in text:
            raise RuntimeError(f"nginx did not start; error log:\n{text}")
    raise RuntimeError("nginx did not start after 3 attempts (ports in use)")


def _mktorrent(src: Path, web_seed: str, out: Path) -> None:
    subprocess.run(
        ["mktorrent", "-l", "15", "-w", web_seed, "-o", str(out), str(src)],
        cwd=src.parent,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def _build_data(srv: Server) -> None:
    root = srv.root
    # plain objects: odd sizes that cross the library's 1 MiB blocks
    srv.blobs["blob.bin"] = rand_bytes(3 * 1024 * 1024 + 12345, 1)
    srv.blobs["async.bin"] = rand_bytes(2 * 1024 * 1024 + 777, 2)
    srv.blobs["cancel.bin"] = rand_bytes(4 * 1024 * 1024 + 3, 3)
    srv.blobs["small.txt"] = b"hello, gtio\n" * 10
    srv.blobs["empty.bin"] = b""
    for name, data in srv.blobs.items():
        (root / name).write_bytes(data)

    # zip: deflated and stored members, one larger than the reader's buffers
    text = b"".join(b"line %d of a compressible text\n" % i for i in range(20000))
    srv.zip_members = {
        "docs/readme.txt": b"gtio reads zip files through zipfile\n",
        "docs/big.txt": text,
        "bin/random.dat": rand_bytes(300_001, 4),
        "bin/stored.dat": rand_bytes(70_000, 5),
        "empty": b"",
    }
    with zipfile.ZipFile(root / "archive.zip", "w") as zf:
        for name, data in srv.zip_members.items():
            method = zipfile.ZIP_STORED if "stored" in name or not data else zipfile.ZIP_DEFLATED
            zf.writestr(name, data, compress_type=method)

    # tar and tar.gz with the same members
    srv.tar_members = {
        "t/a.txt": b"alpha\n" * 1000,
        "t/b.bin": rand_bytes(123_457, 6),
        "t/c/d.bin": rand_bytes(513, 7),
    }
    for fname, mode in (("archive.tar", "w"), ("archive.tar.gz", "w:gz")):
        with tarfile.open(root / fname, mode) as tf:
            for name, data in srv.tar_members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mtime = 1_700_000_000
                tf.addfile(info, io.BytesIO(data))

    # a multi-file torrent: web seed root + name + '/' + path
    src = root / "tdir"
    srv.torrent_files = {
        "a.bin": rand_bytes(100_000, 8),
        "sub/b.txt": b"a small text file inside the torrent\n",
        "sub/c.bin": rand_bytes(70_001, 9),
        "sub/empty.txt": b"",
        "sub/\u00fcn\u00efc\u00f6de %20.txt": "non-ASCII and escape-looking name\n".encode(),
        "z last.bin": rand_bytes(32_768 * 2 + 1, 10),
    }
    for name, data in srv.torrent_files.items():
        p = src / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)
    _mktorrent(src, srv.url("/"), root / "tdir.torrent")

    # a single-file torrent: web seed URL ending in '/' gets the name appended
    srv.single_torrent_data = rand_bytes(200_003, 11)
    (root / "single.bin").write_bytes(srv.single_torrent_data)
    staging = root.parent / "staging"
    staging.mkdir()
    (staging / "single.bin").write_bytes(srv.single_torrent_data)
    _mktorrent(staging / "single.bin", srv.url("/"), root / "single.torrent")


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """nginx on a free loopback port serving the test data (session-wide)."""
    base = tmp_path_factory.mktemp("gtio-nginx")
    tmp = base / "nginx"
    root = base / "www"
    tmp.mkdir()
    root.mkdir()
    proc, port = _start_nginx(tmp, root)
    try:
        srv = Server(port=port, root=root)
        _build_data(srv)
        yield srv
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def blob(server: Server) -> bytes:
    return server.blobs["blob.bin"]
