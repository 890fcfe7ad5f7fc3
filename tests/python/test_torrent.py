"""Torrents made by mktorrent, read through nginx as their BEP 19 web seed."""

from __future__ import annotations

import io

import pytest

import gtio


def _expected_listing(files):
    out, off = [], 0
    for name in sorted(files):  # mktorrent orders files by path
        out.append(gtio.FileInfo(name, off, len(files[name])))
        off += len(files[name])
    return out


def _check_members(ds, files) -> None:
    assert ds.files() == _expected_listing(files)
    assert ds.size == sum(len(d) for d in files.values())
    for name, data in files.items():
        with ds.open_file(name) as f:
            assert isinstance(f, io.BufferedReader)
            assert f.read() == data, name
            assert f.read(1) == b""  # never bleeds into the next file


@pytest.mark.parametrize("how", ["uri", "gto"])
def test_multi_file_torrent(server, how) -> None:
    if how == "uri":
        ds = gtio.open(server.url("tdir.torrent"))
    else:
        ds = gtio.open_gto((server.root / "tdir.torrent").read_bytes())
    with ds:
        _check_members(ds, server.torrent_files)


def test_torrent_stream_is_files_end_to_end(server) -> None:
    files = server.torrent_files
    stream = b"".join(files[n] for n in sorted(files))
    with gtio.open(server.url("tdir.torrent")) as ds:
        assert ds.pread(len(stream) + 10, 0) == stream
        # a read that spans files and pieces (32 KiB)
        assert ds.pread(50_000, 90_000) == stream[90_000:140_000]


def test_open_file_seek_and_bounds(server) -> None:
    data = server.torrent_files["sub/c.bin"]
    with gtio.open_gto(bytearray((server.root / "tdir.torrent").read_bytes())) as ds:
        f = ds.open_file("sub/c.bin", buffer_size=1000)
        assert f.name == "sub/c.bin"
        assert f.seek(-17, io.SEEK_END) == len(data) - 17
        assert f.read(100) == data[-17:]
        f.seek(32_760)
        assert f.read(20) == data[32_760:32_780]
        assert f.tell() == 32_780
        f.seek(len(data) + 5)
        assert f.read() == b""
        raw = f.raw
        assert raw.size == len(data)
        info = ds.file_info("sub/c.bin")
        assert ds.open_file(info).read(10) == data[:10]
        with pytest.raises(FileNotFoundError):
            ds.open_file("no/such/file")


def test_torrent_async_reads(server) -> None:
    import asyncio

    files = server.torrent_files
    stream = b"".join(files[n] for n in sorted(files))

    async def main():
        with gtio.open(server.url("tdir.torrent")) as ds:
            spans = [(40_000, k * 11_111) for k in range(20)]
            got = await asyncio.gather(*(ds.pread_async(n, o) for n, o in spans))
            return spans, got

    spans, got = asyncio.run(main())
    assert got == [stream[o : o + n] for n, o in spans]


def test_single_file_torrent(server) -> None:
    with gtio.open(server.url("single.torrent")) as ds:
        assert ds.files() == [gtio.FileInfo("single.bin", 0, len(server.single_torrent_data))]
        assert ds.open_file("single.bin").read() == server.single_torrent_data
        assert ds.raw().read() == server.single_torrent_data


def test_torrent_cred_goes_to_web_seeds(server) -> None:
    """A credential given to open_gto goes to the web seeds: this torrent's
    seed is /auth/, which refuses requests without it. (Fresh data: verified
    pieces are cached by SHA-1 and shared between torrents.)"""
    import subprocess

    from conftest import rand_bytes

    src = server.root / "authdir"
    files = {"one.bin": rand_bytes(40_000, 21), "two.bin": rand_bytes(50_000, 22)}
    src.mkdir()
    for name, data in files.items():
        (src / name).write_bytes(data)
    out = server.root.parent / "auth.torrent"
    subprocess.run(
        ["mktorrent", "-l", "15", "-w", server.url("/auth/"), "-o", str(out), str(src)],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    meta = out.read_bytes()
    with gtio.open_gto(meta) as ds:
        with pytest.raises(PermissionError) as ei:
            ds.open_file("two.bin").read()
        assert ei.value.http_status == 401
    with gtio.open_gto(meta, cred=server.token) as ds:
        _check_members(ds, files)


def test_local_paths_as_the_cli_takes_them(server, monkeypatch) -> None:
    # A plain string with no scheme is a local path, relative to the cwd: a
    # local .torrent opens the torrent (its web seed is nginx), a local file
    # opens that file.
    monkeypatch.chdir(server.root)
    with gtio.open("tdir.torrent") as ds:
        _check_members(ds, server.torrent_files)
    with gtio.open(b"tdir.torrent") as ds:
        assert [f.name for f in ds.files()] == sorted(server.torrent_files)
    total = sum(len(v) for v in server.torrent_files.values())
    with gtio.open("./tdir.torrent") as ds:
        assert ds.size == total
    with gtio.open(str(server.root / "tdir.torrent")) as ds:
        assert ds.size == total
    with pytest.raises(FileNotFoundError):
        gtio.open("no-such-file.bin")
