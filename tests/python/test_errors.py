"""Errors: errno-matched OSError subclasses, closed datasets, bad arguments."""

from __future__ import annotations

import asyncio
import errno
import subprocess
import sys

import pytest

import gtio


def test_404_is_file_not_found(server) -> None:
    with pytest.raises(FileNotFoundError) as ei:
        gtio.open(server.url("no-such-object.bin"))
    assert ei.value.errno == errno.ENOENT
    assert ei.value.http_status == 404
    assert ei.value.strerror  # the library's message


def test_missing_torrent_is_file_not_found(server) -> None:
    with pytest.raises(FileNotFoundError):
        gtio.open(server.url("missing.torrent"))


def test_bad_metainfo_is_einval() -> None:
    with pytest.raises(OSError) as ei:
        gtio.open_gto(b"garbage")
    assert ei.value.errno == errno.EINVAL
    assert "metainfo" in str(ei.value)
    assert ei.value.http_status == 0
    with pytest.raises(OSError) as ei:
        gtio.open_gto(b"")
    assert ei.value.errno == errno.EINVAL


def test_401_is_permission_error(server) -> None:
    with pytest.raises(PermissionError) as ei:
        gtio.open(server.url("auth/small.txt"))
    assert ei.value.errno == errno.EACCES
    assert ei.value.http_status == 401
    with pytest.raises(PermissionError):
        gtio.open(server.url("auth/small.txt"), cred="wrong-token")


def test_credential_not_in_message(server) -> None:
    secret = "not-the-token-but-secret-1234"
    with pytest.raises(PermissionError) as ei:
        gtio.open(server.url("auth/small.txt"), cred=secret)
    assert secret not in str(ei.value)


@pytest.mark.parametrize(
    "path, exc, code",
    [
        ("status/403/x.bin", PermissionError, errno.EACCES),
        ("status/410/x.bin", FileNotFoundError, errno.ENOENT),
    ],
)
def test_http_status_mapping(server, path, exc, code) -> None:
    with pytest.raises(exc) as ei:
        gtio.open(server.url(path))
    assert ei.value.errno == code
    assert ei.value.http_status == int(path.split("/")[1])


def test_server_ignoring_ranges_is_eopnotsupp(server) -> None:
    with pytest.raises(OSError) as ei:
        with gtio.open(server.url("noranges/blob.bin")) as ds:
            ds.pread(10, 1000)
    assert ei.value.errno == errno.EOPNOTSUPP


def test_url_secrets_not_in_messages_or_repr(server) -> None:
    secret = "SECRETSIG123"
    with pytest.raises(FileNotFoundError) as ei:
        gtio.open(server.url(f"nope.bin?X-Amz-Signature={secret}"))
    assert secret not in str(ei.value)
    with gtio.open(server.url(f"small.txt?X-Amz-Signature={secret}")) as ds:
        assert secret not in repr(ds) and secret not in ds.name
        assert secret not in repr(ds.raw()) and secret not in ds.raw().name


def test_unsupported_scheme_and_bad_strings() -> None:
    with pytest.raises(OSError):
        gtio.open("gopher://127.0.0.1/x")
    with pytest.raises(ValueError):
        gtio.open("http://127.0.0.1/a\0b")
    with pytest.raises(ValueError):
        gtio.open("http://127.0.0.1/a", cred="x\0y")
    with pytest.raises(TypeError):
        gtio.open(42)  # type: ignore[arg-type]


def test_closed_dataset_raises_value_error(server) -> None:
    ds = gtio.open(server.url("small.txt"))
    raw = ds.raw()
    f = ds.open_file("small.txt")
    ds.close()
    ds.close()  # idempotent
    assert ds.closed
    for call in (
        lambda: ds.pread(1, 0),
        lambda: ds.preadinto(bytearray(1), 0),
        lambda: ds.files(),
        lambda: ds.size,
        lambda: ds.raw(),
        lambda: ds.open_file("small.txt"),
        lambda: ds.prefetch(0, 10),
        lambda: ds.__enter__(),
        lambda: raw.read(1),  # readers made before stop working too
        lambda: f.read(1),
        lambda: asyncio.run(ds.pread_async(1, 0)),
    ):
        with pytest.raises(ValueError):
            call()


def test_context_manager_closes_on_error(server) -> None:
    with pytest.raises(RuntimeError):
        with gtio.open(server.url("small.txt")) as ds:
            raise RuntimeError("boom")
    assert ds.closed


def test_del_closes(server) -> None:
    ds = gtio.open(server.url("small.txt"))
    del ds  # __del__ closes; nothing to see but no error


def test_bad_arguments(server) -> None:
    with gtio.open(server.url("small.txt")) as ds:
        with pytest.raises(ValueError):
            ds.pread(-1, 0)
        with pytest.raises(ValueError):
            ds.pread(1, -1)
        with pytest.raises(TypeError):
            ds.pread(1.5, 0)  # type: ignore[arg-type]


def test_init_validation(server) -> None:
    with pytest.raises(TypeError):
        gtio.init(no_such_setting=1)
    with pytest.raises(ValueError):
        gtio.init(poller_thread=1)
    with pytest.raises(ValueError):
        gtio.init(workers=-1)
    with pytest.raises(ValueError):
        gtio.init(ring_entries=1 << 32)
    # once the library runs (any call starts it), init is EBUSY
    with gtio.open(server.url("small.txt")):
        pass
    with pytest.raises(OSError) as ei:
        gtio.init(workers=2)
    assert ei.value.errno == errno.EBUSY


def test_import_error_names_where_it_looked(tmp_path) -> None:
    env = {"GTIO_LIBRARY": str(tmp_path / "nope.so"), "PATH": "/usr/bin:/bin"}
    p = subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import gtio",
         str(_package_root())],
        env=env,
        capture_output=True,
        text=True,
    )
    assert p.returncode != 0
    assert "ImportError" in p.stderr and "nope.so" in p.stderr


def _package_root():
    from pathlib import Path

    return Path(gtio.__file__).resolve().parent.parent
