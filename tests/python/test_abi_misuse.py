"""The C ABI under misuse, called through the raw ctypes CDLL (``gtio._lib.lib``):
None for pointer arguments, closed and foreign handles, double closedir and
close, counts near SIZE_MAX, offsets near UINT64_MAX, lseek overflow, unknown
flags, ``gtio_poll(None, n)``, and ``gtio_lib_fini`` with a dataset open (then
the high-level ``Dataset`` raises ``OSError`` EBADF and a new ``gtio.open``
works).

Async submissions that the library accepts are made on a fresh thread (its
own completion ring) and drained there, so nothing is left in the main
thread's ring for the asyncio integration (``gtio._aio``) to find.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import textwrap
import threading
import time
from ctypes import POINTER, byref, c_void_p
from typing import Callable, List, Optional

import pytest
from conftest import run_in_fresh_process

import gtio
from gtio._lib import (
    GTIO_Dirent,
    GTIO_Error,
    GTIO_FileInfo,
    gtio_usercb_t,
    gtio_usercomp_t,
    lib,
)

SIZE_MAX = 2**64 - 1
UINT64_MAX = 2**64 - 1
INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
SEEK_SET, SEEK_CUR, SEEK_END = 0, 1, 2


def _open(url: str) -> int:
    err = GTIO_Error()
    h = lib.gtio_open_uri(url.encode(), None, byref(err))
    assert h, err.message
    return h


def _fails(call: Callable[[GTIO_Error], int], want: object, code: int) -> None:
    """``call(err)`` returns ``want`` and fills ``err.code`` with ``code``
    and a message."""
    err = GTIO_Error()
    got = call(err)
    assert got == want, f"returned {got!r}, expected {want!r} ({errno.errorcode[code]})"
    assert err.code == code, (
        f"GTIO_Error.code {errno.errorcode.get(err.code, err.code)}, expected "
        f"{errno.errorcode[code]}: {err.message!r}"
    )
    assert err.message, "empty GTIO_Error.message"


def _in_thread(fn: Callable[[], None]) -> None:
    """Run ``fn`` on a new thread (a ring of its own); re-raise its failure."""
    box: List[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - re-raised below
            box.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join(60)
    assert not t.is_alive(), "thread did not finish"
    if box:
        raise box[0]


def _wait_completion(ucb: gtio_usercb_t, timeout: float = 30.0, count: int = 1) -> None:
    """Drain the calling thread's ring until ``ucb`` completed ``count``
    times (ret set by the last)."""
    comps = (gtio_usercomp_t * 8)()
    deadline = time.monotonic() + timeout
    key = ctypes.addressof(ucb)
    while time.monotonic() < deadline:
        n = lib.gtio_poll(comps, 8)
        assert n >= 0
        for i in range(n):
            c = comps[i]
            c.ucp_fun(c.ucp_res, c.ucp_arg)
            count -= c.ucp_arg == key
        if count <= 0:
            return
        time.sleep(0.002)
    raise AssertionError("completion did not arrive")


def _ebadf_everywhere(h: Optional[int], what: str) -> None:
    """Every handle-taking function refuses ``h`` with EBADF (err given and
    NULL), queues nothing and writes nothing."""
    buf = ctypes.create_string_buffer(b"\x5a" * 64, 64)
    ucb = gtio_usercb_t()
    ucb.ret = 12345
    fi = POINTER(GTIO_FileInfo)()
    cases = {
        "size": lambda e: lib.gtio_size(h, e),
        "read": lambda e: lib.gtio_read(h, buf, 64, e),
        "pread": lambda e: lib.gtio_pread(h, buf, 64, 0, e),
        "lseek": lambda e: lib.gtio_lseek(h, 0, SEEK_SET, e),
        "prefetch": lambda e: lib.gtio_prefetch(h, 0, 100, e),
        "get_file_list": lambda e: lib.gtio_get_file_list(h, byref(fi), e),
        "pread_async": lambda e: lib.gtio_pread_async(h, buf, 64, 0, 0, byref(ucb), e),
        "cancel": lambda e: lib.gtio_cancel(h, byref(ucb), e),
        "close": lambda e: lib.gtio_close(h, e),
    }
    for name, call in cases.items():
        try:
            _fails(lambda e: call(byref(e)), -1, errno.EBADF)
            assert call(None) == -1
        except AssertionError as ex:
            raise AssertionError(f"{what}: gtio_{name}: {ex}") from None
    _fails(lambda e: lib.gtio_opendir(h, byref(e)), None, errno.EBADF)
    assert lib.gtio_opendir(h, None) is None
    assert not fi, f"{what}: gtio_get_file_list wrote *fi"
    assert buf.raw == b"\x5a" * 64, f"{what}: the buffer was written"
    assert ucb.ret == 12345
    assert lib.gtio_poll((gtio_usercomp_t * 4)(), 4) == 0, f"{what}: something was queued"


def _dir_ebadf(d: Optional[int], what: str) -> None:
    ent = GTIO_Dirent()
    _fails(lambda e: lib.gtio_readdir(d, byref(ent), byref(e)), -1, errno.EBADF)
    assert lib.gtio_readdir(d, byref(ent), None) == -1
    assert ent.name == b"", f"{what}: gtio_readdir wrote the entry"
    _fails(lambda e: lib.gtio_closedir(d, byref(e)), -1, errno.EBADF)
    assert lib.gtio_closedir(d, None) == -1


# ---------------------------------------------------------------------------


def test_none_for_pointer_arguments(server) -> None:
    h = _open(server.url("blob.bin"))
    try:
        einval = errno.EINVAL
        _fails(lambda e: lib.gtio_open_uri(None, None, byref(e)), None, einval)
        _fails(lambda e: lib.gtio_open_uri(None, b"tok", byref(e)), None, einval)
        assert lib.gtio_open_uri(None, None, None) is None
        _fails(lambda e: lib.gtio_open_uri(b"http://\xff/x", None, byref(e)), None, einval)
        _fails(lambda e: lib.gtio_open_gto(None, 100, None, byref(e)), None, einval)
        _fails(lambda e: lib.gtio_open_gto(None, 0, None, byref(e)), None, einval)
        assert lib.gtio_open_gto(None, 1, None, None) is None

        _fails(lambda e: lib.gtio_read(h, None, 16, byref(e)), -1, einval)
        _fails(lambda e: lib.gtio_pread(h, None, 16, 0, byref(e)), -1, einval)
        assert lib.gtio_pread(h, None, 16, 0, None) == -1
        assert lib.gtio_pread(h, None, 0, 0, None) == 0  # count 0: nothing to write
        assert lib.gtio_read(h, None, 0, None) == 0
        assert lib.gtio_lseek(h, 0, SEEK_CUR, None) == 0

        buf = ctypes.create_string_buffer(16)
        ucb = gtio_usercb_t()
        _fails(lambda e: lib.gtio_pread_async(h, None, 16, 0, 0, byref(ucb), byref(e)), -1, einval)
        _fails(lambda e: lib.gtio_pread_async(h, buf, 16, 0, 0, None, byref(e)), -1, einval)
        assert lib.gtio_pread_async(h, buf, 16, 0, 0, None, None) == -1
        _fails(lambda e: lib.gtio_cancel(h, None, byref(e)), -1, einval)
        _fails(lambda e: lib.gtio_get_file_list(h, None, byref(e)), -1, einval)
        assert lib.gtio_get_file_list(h, None, None) == -1

        err = GTIO_Error()
        d = lib.gtio_opendir(h, byref(err))
        assert d, err.message
        _fails(lambda e: lib.gtio_readdir(d, None, byref(e)), -1, einval)
        assert lib.gtio_readdir(d, None, None) == -1
        ent = GTIO_Dirent()
        assert lib.gtio_readdir(d, byref(ent), None) == 0  # not advanced by the refusals
        assert ent.name == b"blob.bin" and ent.size == len(server.blobs["blob.bin"])
        assert lib.gtio_readdir(d, byref(ent), None) == 1
        assert lib.gtio_closedir(d, None) == 0

        # gtio_poll: -1 with errno EINVAL for NULL ucps and max > 0; 0 for max <= 0
        for n in (1, 4, 2**31 - 1):
            ctypes.set_errno(0)
            assert lib.gtio_poll(None, n) == -1
            assert ctypes.get_errno() == errno.EINVAL
        assert lib.gtio_poll(None, 0) == 0
        assert lib.gtio_poll(None, -1) == 0

        lib.gtio_config_default(None)
        assert lib.gtio_version()
        lib.gtio_free_file_list(None, 0)
        lib.gtio_free_file_list(None, 5)
    finally:
        assert lib.gtio_close(h, None) == 0


def test_closed_and_foreign_handles(server) -> None:
    h = _open(server.url("small.txt"))
    err = GTIO_Error()
    d = lib.gtio_opendir(h, byref(err))
    assert d, err.message
    assert lib.gtio_close(h, byref(err)) == 0, err.message
    _fails(lambda e: lib.gtio_close(h, byref(e)), -1, errno.EBADF)  # double close
    _ebadf_everywhere(h, "closed")
    for bad in (None, 12345, 1, 2**64 - 1, 0x6710_0000, ctypes.addressof(err)):
        _ebadf_everywhere(bad, f"foreign {bad!r}")
        _dir_ebadf(bad, f"foreign {bad!r}")
    _ebadf_everywhere(c_void_p(12345).value, "c_void_p(12345)")

    # The cursor outlives its dataset; closed once, then EBADF.
    ent = GTIO_Dirent()
    assert lib.gtio_readdir(d, byref(ent), None) == 0
    assert ent.name == b"small.txt"
    assert lib.gtio_closedir(d, byref(err)) == 0, err.message
    _dir_ebadf(d, "double closedir")
    _dir_ebadf(h, "a closed dataset handle as a cursor")


def test_free_file_list_misuse(server) -> None:
    h = _open(server.url("tdir.torrent"))
    try:
        fi = POINTER(GTIO_FileInfo)()
        n = lib.gtio_get_file_list(h, byref(fi), None)
        assert n == len(server.torrent_files)
        names = sorted(fi[i].name.decode() for i in range(n))
        assert names == sorted(server.torrent_files)
        lib.gtio_free_file_list(fi, n)
        lib.gtio_free_file_list(fi, n)  # twice: ignored
        lib.gtio_free_file_list(fi, 10**9)
        foreign = (GTIO_FileInfo * 3)()
        foreign[1].size = 77
        lib.gtio_free_file_list(foreign, 3)  # not from gtio: ignored, untouched
        lib.gtio_free_file_list(ctypes.cast(ctypes.addressof(foreign) + 8, POINTER(GTIO_FileInfo)), -1)
        assert foreign[1].size == 77
    finally:
        lib.gtio_close(h, None)


def test_counts_near_size_max(server) -> None:
    h = _open(server.url("blob.bin"))
    try:
        buf = ctypes.create_string_buffer(64)
        ucb = gtio_usercb_t()
        for count in (SIZE_MAX, SIZE_MAX - 1, 2**63):
            _fails(lambda e: lib.gtio_read(h, buf, count, byref(e)), -1, errno.EINVAL)
            _fails(lambda e: lib.gtio_pread(h, buf, count, 0, byref(e)), -1, errno.EINVAL)
            _fails(lambda e: lib.gtio_pread(h, buf, count, UINT64_MAX, byref(e)), -1, errno.EINVAL)
            _fails(
                lambda e: lib.gtio_pread_async(h, buf, count, 0, 0, byref(ucb), byref(e)),
                -1,
                errno.EINVAL,
            )
        meta = b"d4:infod6:lengthi1e4:name1:aee"
        for size in (SIZE_MAX, 2**63, 64 * 1024 * 1024 + 1):
            _fails(lambda e: lib.gtio_open_gto(meta, size, None, byref(e)), None, errno.EINVAL)
        assert lib.gtio_lseek(h, 0, SEEK_CUR, None) == 0
        assert lib.gtio_poll((gtio_usercomp_t * 4)(), 4) == 0
    finally:
        lib.gtio_close(h, None)


def test_offsets_near_uint64_max_and_lseek_overflow(server) -> None:
    data = server.blobs["blob.bin"]
    size = len(data)
    h = _open(server.url("blob.bin"))
    try:
        buf = ctypes.create_string_buffer(b"\x5a" * 64, 64)
        offsets = [UINT64_MAX, UINT64_MAX - 1, UINT64_MAX - 63, INT64_MAX, INT64_MAX + 1, size, size + 1]
        for off in offsets:
            err = GTIO_Error()
            assert lib.gtio_pread(h, buf, 64, off, byref(err)) == 0, (off, err.message)
            assert lib.gtio_prefetch(h, off, UINT64_MAX, byref(err)) == 0, (off, err.message)
        assert buf.raw == b"\x5a" * 64
        assert lib.gtio_pread(h, buf, 64, size - 10, None) == 10
        assert buf.raw[:10] == data[-10:]
        assert lib.gtio_prefetch(h, 0, UINT64_MAX, None) == 0

        def async_far() -> None:
            for off in offsets:
                ucb = gtio_usercb_t()
                ucb.ret = -12345
                err = GTIO_Error()
                assert lib.gtio_pread_async(h, buf, 64, off, 0, byref(ucb), byref(err)) == 0, (
                    off,
                    err.message,
                )
                _wait_completion(ucb)
                assert ucb.ret == 0, (off, ucb.ret)

        _in_thread(async_far)

        # lseek: overflow and negative results are EINVAL, the offset unchanged
        assert lib.gtio_lseek(h, 100, SEEK_SET, None) == 100
        for off, whence in (
            (INT64_MAX, SEEK_END),
            (-1, SEEK_SET),
            (INT64_MIN, SEEK_SET),
            (INT64_MIN, SEEK_END),
            (-101, SEEK_CUR),
            (0, 3),
            (0, -1),
        ):
            _fails(lambda e: lib.gtio_lseek(h, off, whence, byref(e)), -1, errno.EINVAL)
        assert lib.gtio_lseek(h, 0, SEEK_CUR, None) == 100
        assert lib.gtio_lseek(h, INT64_MAX, SEEK_SET, None) == INT64_MAX
        assert lib.gtio_read(h, buf, 64, None) == 0
        _fails(lambda e: lib.gtio_lseek(h, 1, SEEK_CUR, byref(e)), -1, errno.EINVAL)
        assert lib.gtio_lseek(h, INT64_MAX - size, SEEK_END, None) == INT64_MAX
        assert lib.gtio_lseek(h, -size, SEEK_END, None) == 0
    finally:
        lib.gtio_close(h, None)


def test_unknown_flags_and_duplicate_ucb(server) -> None:
    data = server.blobs["cancel.bin"]
    h = _open(server.url("cancel.bin"))
    try:
        buf = ctypes.create_string_buffer(64)
        ucb = gtio_usercb_t()
        for flags in (2, 4, 0x8000_0000, 0xFFFF_FFFF, 3):
            _fails(
                lambda e: lib.gtio_pread_async(h, buf, 64, 0, flags, byref(ucb), byref(e)),
                -1,
                errno.EINVAL,
            )
        assert lib.gtio_poll((gtio_usercomp_t * 4)(), 4) == 0

        def duplicate() -> None:
            n = 1 << 20
            big = ctypes.create_string_buffer(n)
            for attempt in range(4):  # retried only if the first read won the race
                off = len(data) - n - attempt * n
                u = gtio_usercb_t()
                err = GTIO_Error()
                assert lib.gtio_pread_async(h, big, n, off, 0, byref(u), byref(err)) == 0, err.message
                err2 = GTIO_Error()
                rc = lib.gtio_pread_async(h, buf, 16, 0, 0, byref(u), byref(err2))
                if rc == 0:  # accepted: the first had completed; take both completions
                    _wait_completion(u, count=2)
                    continue
                _wait_completion(u)
                assert rc == -1 and err2.code == errno.EINVAL, err2.message
                assert u.ret == n and big.raw == data[off : off + n]
                return
            raise AssertionError("a ucb submitted twice while pending was never refused")

        _in_thread(duplicate)
    finally:
        lib.gtio_close(h, None)


def test_lib_fini_with_a_dataset_open(server) -> None:
    """After gtio_lib_fini the open Dataset raises OSError EBADF from every
    reading method, closing it is quiet, and a new gtio.open restarts the
    library with its defaults (sync and asyncio reads work). The library is
    left running with defaults, as any first call would leave it."""
    data = server.blobs["blob.bin"]
    ds = gtio.open(server.url("blob.bin"))
    assert ds.pread(100, 1000) == data[1000:1100]
    assert asyncio.run(ds.pread_async(100, 2000)) == data[2000:2100]
    tor = gtio.open(server.url("tdir.torrent"))
    reader = ds.open_file("blob.bin")
    err = GTIO_Error()
    assert lib.gtio_lib_fini(byref(err)) == 0, err.message

    def ebadf(fn: Callable[[], object]) -> None:
        with pytest.raises(OSError) as ei:
            fn()
        assert ei.value.errno == errno.EBADF, ei.value

    ebadf(lambda: ds.pread(100, 1000))
    ebadf(lambda: ds.preadinto(bytearray(10), 0))
    ebadf(lambda: ds.prefetch(0, 1000))
    ebadf(lambda: asyncio.run(ds.pread_async(100, 3000)))
    ebadf(lambda: reader.read(10))
    ebadf(lambda: tor.files())  # never listed before: asks the library
    ebadf(lambda: tor.pread(10, 0))
    assert ds.size == len(data)  # known without the library
    ds.close()  # EBADF from gtio_close is not an error for close()
    tor.close()
    reader.close()
    assert ds.closed
    with pytest.raises(ValueError):
        ds.pread(1, 0)
    assert lib.gtio_lib_fini(None) == 0  # not running: still 0

    with gtio.open(server.url("blob.bin")) as ds2:
        assert ds2.size == len(data)
        assert ds2.pread(1000, 123_457) == data[123_457:124_457]
        assert asyncio.run(ds2.pread_async(1000, 2_000_001)) == data[2_000_001:2_001_001]
        assert gtio.default_config()["ring_entries"] > 0
    # init after the implicit restart is EBUSY, as before any fini
    with pytest.raises(OSError) as ei:
        gtio.init()
    assert ei.value.errno == errno.EBUSY


def test_lib_fini_then_init_in_a_subprocess(server) -> None:
    """gtio_lib_fini, then gtio.init with settings (global state: a fresh
    process), then the dataset opened before is EBADF and new ones work."""
    script = textwrap.dedent(
        """
        import asyncio, ctypes, errno, sys
        sys.path.insert(0, sys.argv[1])
        import gtio
        from gtio._lib import lib, GTIO_Error
        url, path = sys.argv[2], sys.argv[3]
        data = open(path, "rb").read()
        ds = gtio.open(url)
        assert ds.pread(10, 5) == data[5:15]
        assert lib.gtio_lib_fini(None) == 0
        gtio.init(ring_entries=8, block_size=32768)
        try:
            gtio.init()
        except OSError as e:
            assert e.errno == errno.EBUSY, e
        else:
            raise AssertionError("second init succeeded")
        try:
            ds.pread(10, 5)
        except OSError as e:
            assert e.errno == errno.EBADF, e
        else:
            raise AssertionError("pre-fini dataset still reads")
        ds.close()
        with gtio.open(url) as ds2:
            assert ds2.pread(5000, 40_000) == data[40_000:45_000]
            async def many():
                return await asyncio.gather(*(ds2.pread_async(1000, i * 70_001) for i in range(40)))
            got = asyncio.run(many())
            assert got == [data[i * 70_001 : i * 70_001 + 1000] for i in range(40)]
        assert lib.gtio_lib_fini(None) == 0
        print("ok")
        """
    )
    run_in_fresh_process(script, server, "blob.bin")
