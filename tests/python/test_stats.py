"""Statistics from Python: ``ds.stats()`` and ``gtio.stats()`` give the
counts of ``gtio_stats_json`` as dicts, checked against the reads made."""

from __future__ import annotations

import pytest

import gtio

KEYS = {
    "cache_hits",
    "cache_misses",
    "bytes_delivered",
    "bytes_fetched",
    "bytes_redundant",
    "bytes_hash_failed",
    "requests",
    "retries",
    "errors",
    "downloads_active",
    "peers_connected",
    "cache_bytes_used",
    "store_bytes_used",
    "first_byte_us",
    "read_us",
}


def test_dataset_stats_count_its_reads(server, blob) -> None:
    before = gtio.stats()
    ds = gtio.open(server.url("blob.bin"))
    # The piece may be cached already (keys are stable, and other tests
    # read this blob): the second read surely hits. Reads of most of a
    # block, which is cached whole (a cold read of a few pages is a
    # right-sized request, not cached: docs/http.md).
    off = 2 * 1024 * 1024 + 4096
    n = 40_000
    assert ds.pread(n, off) == blob[off : off + n]
    assert ds.pread(n, off) == blob[off : off + n]
    s = ds.stats()
    assert KEYS <= set(s), set(s) ^ KEYS
    assert s["cache_hits"] + s["cache_misses"] == 2, s
    assert s["cache_hits"] >= 1, s
    assert s["bytes_delivered"] == 2 * n
    if s["cache_misses"]:
        assert s["bytes_fetched"]["http"] >= n and s["requests"] >= 1
    assert s["bytes_fetched"]["webseed"] == 0
    assert sum(s["read_us"].values()) == 2
    assert "+Inf" in s["read_us"]
    ds.close()
    with pytest.raises(ValueError):
        ds.stats()
    # The process keeps what the closed dataset counted.
    after = gtio.stats()
    assert after["bytes_delivered"] - before["bytes_delivered"] == 2 * n
    assert after["cache_hits"] - before["cache_hits"] >= 1


def test_torrent_bytes_come_from_web_seeds(server) -> None:
    with gtio.open(server.url("tdir.torrent")) as ds:
        with ds.open_file("a.bin") as f:
            assert f.read() == server.torrent_files["a.bin"]
        s = ds.stats()
        # Cold pieces come from the web seed (another test may have read
        # some already: pieces are shared by SHA-1).
        if s["cache_misses"]:
            assert s["bytes_fetched"]["webseed"] > 0, s
        assert s["bytes_fetched"]["http"] == 0
        assert s["bytes_delivered"] == 100_000
        assert s["bytes_hash_failed"] == 0


def test_init_cache_dir_keeps_pieces_for_the_next_process(server, blob, tmp_path) -> None:
    """gtio.init(cache_dir=...) starts the persistent store: a second
    process reads the object's pieces from disk, not from nginx."""
    import os
    import subprocess
    import sys

    code = (
        "import gtio, json, sys\n"
        "gtio.init(cache_dir=sys.argv[1])\n"
        "ds = gtio.open(sys.argv[2])\n"
        "data = ds.pread(300000, 1000)\n"
        "s = ds.stats()\n"
        "print(json.dumps([len(data), s['bytes_fetched']['http'], s['bytes_fetched']['store']]))\n"
    )
    import gtio as pkg

    env = dict(os.environ)
    # The child imports the same package this test does.
    pkg_dir = os.path.dirname(os.path.dirname(os.path.abspath(pkg.__file__)))
    env["PYTHONPATH"] = pkg_dir + os.pathsep + env.get("PYTHONPATH", "")
    runs = []
    for _ in range(2):
        p = subprocess.run(
            [sys.executable, "-c", code, str(tmp_path / "store"), server.url("blob.bin")],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        runs.append(__import__("json").loads(p.stdout))
    (n1, http1, _), (n2, http2, store2) = runs
    assert n1 == n2 == 300000
    assert http1 >= 300000
    assert http2 == 0 and store2 >= 300000, runs
    assert any((tmp_path / "store" / "gtio-store-v1" / "pieces").iterdir())
