"""The standard library's zipfile and tarfile reading through gtio file objects."""

from __future__ import annotations

import io
import tarfile
import zipfile

import pytest

import gtio


def test_zipfile_over_raw(server) -> None:
    with gtio.open(server.url("archive.zip")) as ds:
        with zipfile.ZipFile(ds.raw()) as zf:
            assert sorted(zf.namelist()) == sorted(server.zip_members)
            types = {i.filename: i.compress_type for i in zf.infolist()}
            assert types["docs/big.txt"] == zipfile.ZIP_DEFLATED
            assert types["bin/stored.dat"] == zipfile.ZIP_STORED
            for name, data in server.zip_members.items():
                assert zf.read(name) == data, name
            assert zf.testzip() is None
            # streaming a member in small pieces
            with zf.open("bin/random.dat") as m:
                chunks = iter(lambda: m.read(4097), b"")
                assert b"".join(chunks) == server.zip_members["bin/random.dat"]


def test_zipfile_over_buffered_reader(server) -> None:
    with gtio.open(server.url("archive.zip")) as ds:
        with zipfile.ZipFile(io.BufferedReader(ds.raw(), 16384)) as zf:
            assert zf.read("docs/readme.txt") == server.zip_members["docs/readme.txt"]


@pytest.mark.parametrize("fname", ["archive.tar", "archive.tar.gz"])
def test_tarfile_random_access(server, fname) -> None:
    with gtio.open(server.url(fname)) as ds:
        with tarfile.open(fileobj=io.BufferedReader(ds.raw())) as tf:
            names = [m.name for m in tf.getmembers() if m.isfile()]
            assert names == list(server.tar_members)
            for name, data in server.tar_members.items():
                f = tf.extractfile(name)
                assert f is not None
                assert f.read() == data, name


@pytest.mark.parametrize("fname, mode", [("archive.tar", "r|"), ("archive.tar.gz", "r|gz")])
def test_tarfile_stream(server, fname, mode) -> None:
    with gtio.open(server.url(fname)) as ds:
        seen = {}
        with tarfile.open(fileobj=ds.raw(), mode=mode) as tf:
            for m in tf:
                if m.isfile():
                    f = tf.extractfile(m)
                    assert f is not None
                    seen[m.name] = f.read()
        assert seen == server.tar_members
