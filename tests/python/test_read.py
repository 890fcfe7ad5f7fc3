"""Reading plain HTTP objects: pread, raw file objects, byte for byte."""

from __future__ import annotations

import array
import io
import threading
from pathlib import Path

import pytest

import gtio

MiB = 1024 * 1024


def test_version_and_library() -> None:
    assert gtio.version() == gtio.__version__
    assert Path(gtio.library_path).name.startswith("libgtio.so")


def test_size_files_and_repr(server, blob) -> None:
    with gtio.open(server.url("blob.bin")) as ds:
        assert ds.size == len(blob)
        assert ds.files() == [gtio.FileInfo("blob.bin", 0, len(blob))]
        assert not ds.closed
        assert "blob.bin" in repr(ds)
    assert ds.closed
    assert "closed" in repr(ds)


@pytest.mark.parametrize(
    "n, offset",
    [
        (1, 0),
        (4096, 0),
        (100_000, 12_345),
        (MiB, MiB - 7),  # across a block boundary
        (2 * MiB + 3, 511),  # across several
        (1000, 3 * MiB),  # up to the tail
        (0, 5),
    ],
)
def test_pread(server, blob, n, offset) -> None:
    with gtio.open(server.url("blob.bin")) as ds:
        assert ds.pread(n, offset) == blob[offset : offset + n]


def test_pread_end_of_stream(server, blob) -> None:
    size = len(blob)
    with gtio.open(server.url("blob.bin")) as ds:
        assert ds.pread(100, size - 10) == blob[-10:]  # short only at the end
        assert ds.pread(100, size) == b""
        assert ds.pread(100, size + 12345) == b""
        assert ds.pread(10**15, size - 3) == blob[-3:]  # a huge n is clamped


def test_empty_object(server) -> None:
    with gtio.open(server.url("empty.bin")) as ds:
        assert ds.size == 0
        assert ds.files() == [gtio.FileInfo("empty.bin", 0, 0)]
        assert ds.pread(10, 0) == b""
        assert ds.raw().read() == b""


def test_preadinto(server, blob) -> None:
    with gtio.open(server.url("blob.bin")) as ds:
        ba = bytearray(70_001)
        assert ds.preadinto(ba, 999_999) == len(ba)
        assert ba == blob[999_999 : 999_999 + len(ba)]
        arr = array.array("I", bytes(4 * 1000))  # a non-byte format
        assert ds.preadinto(arr, 8) == 4000
        assert arr.tobytes() == blob[8:4008]
        mv = memoryview(bytearray(50))
        assert ds.preadinto(mv[10:30], len(blob) - 5) == 5
        assert bytes(mv[10:15]) == blob[-5:]
        with pytest.raises(TypeError):
            ds.preadinto(b"read-only", 0)


def test_pread_from_threads(server, blob) -> None:
    errors = []
    with gtio.open(server.url("blob.bin")) as ds:

        def work(seed: int) -> None:
            try:
                for i in range(20):
                    off = (seed * 7919 + i * 104_729) % len(blob)
                    n = 1 + (seed * 31 + i * 65_537) % 200_000
                    if ds.pread(n, off) != blob[off : off + n]:
                        errors.append((off, n))
            except Exception as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []


def test_raw_sequential_odd_sizes(server, blob) -> None:
    sizes = [1, 7, 4093, 65_537, MiB + 3, 3, 250_000]
    with gtio.open(server.url("blob.bin")) as ds:
        raw = ds.raw()
        assert isinstance(raw, io.RawIOBase)
        assert raw.readable() and raw.seekable() and not raw.writable()
        out = bytearray()
        i = 0
        while True:
            buf = bytearray(sizes[i % len(sizes)])
            n = raw.readinto(buf)
            if n == 0:
                break
            out += buf[:n]
            assert raw.tell() == len(out)
            i += 1
        assert out == blob
        assert raw.read(10) == b""
        assert raw.read() == b""


def test_raw_seek_tell(server, blob) -> None:
    size = len(blob)
    with gtio.open(server.url("blob.bin")) as ds, ds.raw() as raw:
        assert raw.tell() == 0
        assert raw.seek(MiB - 2) == MiB - 2
        assert raw.read(5) == blob[MiB - 2 : MiB + 3]
        assert raw.seek(-3, io.SEEK_CUR) == MiB
        assert raw.read(4) == blob[MiB : MiB + 4]
        assert raw.seek(-10, io.SEEK_END) == size - 10
        assert raw.read(100) == blob[-10:]
        assert raw.tell() == size
        assert raw.read(1) == b""
        assert raw.seek(size + 100) == size + 100  # past the end is allowed
        assert raw.read(1) == b""
        assert raw.readinto(bytearray(8)) == 0
        with pytest.raises(OSError):
            raw.seek(-1)
        with pytest.raises(ValueError):
            raw.seek(0, 7)
        raw.seek(0)
        assert raw.readall() == blob
    assert raw.closed
    with pytest.raises(ValueError):
        raw.read(1)


def test_raw_positions_are_independent(server, blob) -> None:
    with gtio.open(server.url("blob.bin")) as ds:
        r1, r2 = ds.raw(), ds.raw()
        r1.seek(1000)
        assert r2.read(10) == blob[:10]
        assert r1.read(10) == blob[1000:1010]
        assert (r1.tell(), r2.tell()) == (1010, 10)


def test_buffered_reader_over_raw(server) -> None:
    data = server.blobs["small.txt"]
    with gtio.open(server.url("small.txt")) as ds:
        f = io.BufferedReader(ds.raw(), buffer_size=7)
        assert f.readline() == b"hello, gtio\n"
        assert f.read() == data[12:]
        f.seek(3)
        assert f.peek(1)[:1] == data[3:4]
        assert list(io.TextIOWrapper(io.BufferedReader(ds.raw()), "ascii")) == [
            "hello, gtio\n"
        ] * 10


def test_file_uri_and_pathlike(server, blob) -> None:
    path = server.root / "blob.bin"
    with gtio.open(path.as_uri()) as ds:
        assert ds.pread(1000, 2 * MiB) == blob[2 * MiB : 2 * MiB + 1000]
    with gtio.open(path) as ds:
        assert ds.size == len(blob)
    odd = server.root.parent / "a dir with spaces %41"
    odd.mkdir(exist_ok=True)
    (odd / "f #1.bin").write_bytes(blob[:1000])
    with gtio.open(odd / "f #1.bin") as ds:  # percent-encoded by as_uri()
        assert ds.pread(2000, 0) == blob[:1000]


def test_bearer_credential(server, blob) -> None:
    with gtio.open(server.url("auth/blob.bin"), cred=server.token) as ds:
        assert ds.pread(123, 4567) == blob[4567 : 4567 + 123]
    # a value that starts with a scheme word is sent as given
    with gtio.open(server.url("auth/small.txt"), cred=b"Bearer " + server.token.encode()) as ds:
        assert ds.pread(5, 0) == b"hello"
