"""`gtio create --tracker` (issue 16, item 4): BEP 12 tiers as libtorrent
reads them, the raw announce/announce-list keys as a bencode decoder written
here reads them, and an info hash that trackers do not change.

libtorrent is the system's python3-libtorrent (scripts/install-deps.sh),
run with /usr/bin/python3 since the test venv does not see system packages.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GTIO = REPO / "target" / "release" / "gtio"
SYSTEM_PYTHON = "/usr/bin/python3"


def _decode(b: bytes, i: int = 0):
    """A minimal bencode decoder: (value, next index)."""
    c = b[i : i + 1]
    if c == b"i":
        j = b.index(b"e", i)
        return int(b[i + 1 : j]), j + 1
    if c == b"l":
        out, i = [], i + 1
        while b[i : i + 1] != b"e":
            v, i = _decode(b, i)
            out.append(v)
        return out, i + 1
    if c == b"d":
        out, i = {}, i + 1
        while b[i : i + 1] != b"e":
            k, i = _decode(b, i)
            out[k], i = _decode(b, i)
        return out, i + 1
    j = b.index(b":", i)
    n = int(b[i:j])
    return b[j + 1 : j + 1 + n], j + 1 + n


def _create(src: Path, out: Path, *extra: str) -> str:
    p = subprocess.run(
        [str(GTIO), "create", str(src), "-l", "15", "-o", str(out), *extra],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 0, p.stderr
    m = re.search(r"info hash ([0-9a-f]{40})", p.stdout)
    assert m, p.stdout
    return m.group(1)


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    src = tmp_path / "ds"
    (src / "sub").mkdir(parents=True)
    (src / "a.bin").write_bytes(bytes(range(256)) * 300)
    (src / "sub" / "b.txt").write_text("tracker test\n" * 100)
    return src


LT = r"""
import json, sys, libtorrent as lt
ti = lt.torrent_info(sys.argv[1])
print(json.dumps({"hash": str(ti.info_hashes().v1),
                  "trackers": [[t.url, t.tier] for t in ti.trackers()],
                  "seeds": [w["url"] for w in ti.web_seeds()]}))
"""


def _libtorrent(path: Path) -> dict:
    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import libtorrent"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail("python3-libtorrent is missing (scripts/install-deps.sh installs it)")
    p = subprocess.run([SYSTEM_PYTHON, "-c", LT, str(path)], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_tiers_announce_and_announce_list(tree, tmp_path):
    plain = tmp_path / "plain.torrent"
    tiered = tmp_path / "tiered.torrent"
    h0 = _create(tree, plain)
    h1 = _create(
        tree, tiered,
        "--tracker", "http://t1.example/announce, http://t2.example/announce",
        "--tracker", "udp://t3.example:6969/announce",
        "--web-seed", "http://seed.example/",
    )
    assert h0 == h1, "trackers are outside the info dictionary"

    top, _ = _decode(tiered.read_bytes())
    assert top[b"announce"] == b"http://t1.example/announce"
    assert top[b"announce-list"] == [
        [b"http://t1.example/announce", b"http://t2.example/announce"],
        [b"udp://t3.example:6969/announce"],
    ]
    assert top[b"url-list"] == [b"http://seed.example/"]
    plain_top, _ = _decode(plain.read_bytes())
    assert b"announce" not in plain_top and b"announce-list" not in plain_top

    lt = _libtorrent(tiered)
    assert lt["hash"] == h1
    # BEP 12: a client shuffles the URLs within a tier, so compare as sets
    assert sorted(lt["trackers"]) == [
        ["http://t1.example/announce", 0],
        ["http://t2.example/announce", 0],
        ["udp://t3.example:6969/announce", 1],
    ]
    assert lt["seeds"] == ["http://seed.example/"]


def test_one_tracker_is_announce_only_and_gtio_still_reads_it(tree, tmp_path):
    one = tmp_path / "one.torrent"
    _create(tree, one, "--tracker", "https://only.example/announce", "--web-seed", "http://s.example/")
    top, _ = _decode(one.read_bytes())
    assert top[b"announce"] == b"https://only.example/announce"
    assert b"announce-list" not in top
    assert _libtorrent(one)["trackers"] == [["https://only.example/announce", 0]]
    ls = subprocess.run([str(GTIO), "ls", "--json", str(one)], capture_output=True, text=True, timeout=60)
    assert ls.returncode == 0, ls.stderr
    assert [f["name"] for f in json.loads(ls.stdout)["files"]] == ["a.bin", "sub/b.txt"]


@pytest.mark.parametrize(
    "bad", ["ftp://t/announce", "t.example/announce", "http://", "http://a/x,,http://b/y", ""]
)
def test_bad_tracker_is_a_usage_error(tree, tmp_path, bad):
    out = tmp_path / "x.torrent"
    p = subprocess.run(
        [str(GTIO), "create", str(tree), "--tracker", bad, "-o", str(out)],
        capture_output=True, text=True, timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert "--tracker" in p.stderr and "announce URL" in p.stderr
    assert not out.exists()
