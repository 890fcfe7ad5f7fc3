"""The tool's error messages say each thing once (issue 16, item 4): the
dataset's name once, the reason once, no Rust "(os error N)" noise, and
never a credential or a query string."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GTIO = REPO / "target" / "release" / "gtio"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once it is closed


def _fails(*args: str) -> str:
    p = subprocess.run([str(GTIO), *args], capture_output=True, text=True, timeout=60)
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gtio: "), p.stderr
    return lines[0]


def test_connection_refused_is_said_once():
    port = _closed_port()
    for path in ("x.bin", "set.torrent"):
        url = f"http://127.0.0.1:{port}/{path}"
        msg = _fails("ls", url)
        assert msg.count(url) == 1, msg
        assert msg.lower().count("refused") == 1, msg
        assert "os error" not in msg, msg


def test_credentials_and_query_stay_out():
    port = _closed_port()
    msg = _fails("cat", f"http://user:hunter2@127.0.0.1:{port}/x.bin?sig=s3cr3t")
    assert "hunter2" not in msg and "s3cr3t" not in msg, msg
    assert msg.count(f"127.0.0.1:{port}/x.bin") == 1, msg


def test_missing_local_file_is_said_once(tmp_path):
    missing = tmp_path / "nope.torrent"
    msg = _fails("ls", str(missing))
    assert msg.count(str(missing)) == 1 and "os error" not in msg, msg
    assert "No such file" in msg
