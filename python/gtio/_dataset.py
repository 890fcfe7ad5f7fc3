"""Datasets and their file objects."""

from __future__ import annotations

import ctypes
import errno
import io
import json
import operator
import os
from ctypes import POINTER, byref
from types import TracebackType
from typing import Any, Dict, List, NamedTuple, Optional, Tuple, Type, Union
from urllib.parse import urlsplit, urlunsplit

from . import _aio
from ._lib import GTIO_Error, GTIO_FileInfo, error_from, lib

__all__ = [
    "Dataset",
    "FileInfo",
    "open",
    "open_gto",
    "set_setting",
    "stats",
    "DEFAULT_BUFFER_SIZE",
]

#: Buffer size of the readers :meth:`Dataset.open_file` returns.
DEFAULT_BUFFER_SIZE = 256 * 1024

StrOrBytes = Union[str, bytes]


class FileInfo(NamedTuple):
    """One file of a dataset: its path, where it starts in the stream, its size."""

    name: str
    """Path inside the dataset, '/'-separated."""
    offset: int
    """Where the file starts in the dataset's byte stream."""
    size: int
    """Size in bytes."""


def _c_string(value: Union[str, bytes, "os.PathLike[str]"], what: str) -> bytes:
    b = os.fsencode(value) if isinstance(value, os.PathLike) else value
    if isinstance(b, str):
        b = b.encode("utf-8")
    if not isinstance(b, bytes):
        raise TypeError(f"{what} must be str or bytes, not {type(value).__name__}")
    if b"\0" in b:
        raise ValueError(f"{what} contains a NUL byte")
    return b


def _display_name(uri: str) -> str:
    """The URI without userinfo, query or fragment: safe for repr and logs
    (presigned URLs carry their credentials in the query)."""
    try:
        parts = urlsplit(uri)
        netloc = parts.netloc.rpartition("@")[2]
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    except ValueError:
        return "<uri>"


def _index(value: Any, what: str) -> int:
    v = operator.index(value)
    if v < 0:
        raise ValueError(f"{what} must not be negative, got {v}")
    return v


class Dataset:
    """An open dataset: one byte stream, its files laid end to end.

    Made by :func:`gtio.open` or :func:`gtio.open_gto`. Reading methods may
    be called from any number of threads at once (they release the GIL while
    the library works). After :meth:`close`, every method except
    :meth:`close` raises ``ValueError``, as a closed file does. Use it as a
    context manager to close it deterministically; it is also closed when
    garbage-collected.
    """

    _h: Optional[int]

    def __init__(self, handle: int, name: str) -> None:
        """Wrap a ``GTIO *`` handle (internal: use :func:`gtio.open`)."""
        self._h = handle
        self._name = name
        self._files: Optional[Tuple[FileInfo, ...]] = None
        err = GTIO_Error()
        size = lib.gtio_size(handle, byref(err))
        if size < 0:
            exc = error_from(err, "gtio_size")
            self.close()
            raise exc
        self._size = int(size)

    # -- state -------------------------------------------------------------

    def _handle(self) -> int:
        h = self._h
        if h is None:
            raise ValueError("I/O operation on closed dataset")
        return h

    @property
    def closed(self) -> bool:
        """True once :meth:`close` has run."""
        return self._h is None

    @property
    def name(self) -> str:
        """The URI it was opened from (without query, fragment or userinfo),
        or ``"<metainfo>"`` for :func:`gtio.open_gto`."""
        return self._name

    @property
    def size(self) -> int:
        """Size of the dataset's byte stream."""
        self._handle()
        return self._size

    def close(self) -> None:
        """Close the dataset. Pending asynchronous reads complete with
        ``ECANCELED``; readers made from it stop working. Idempotent."""
        h = self._h
        if h is None:
            return
        self._h = None
        err = GTIO_Error()
        if lib.gtio_close(h, byref(err)) != 0 and err.code != errno.EBADF:
            raise error_from(err, "gtio_close")

    def __enter__(self) -> "Dataset":
        self._handle()
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # interpreter shutdown, or the library gone
            pass

    def __repr__(self) -> str:
        state = "closed" if self._h is None else f"size={self._size}"
        return f"<gtio.Dataset {self._name!r} {state}>"

    def stats(self) -> Dict[str, Any]:
        """This dataset's statistics (``gtio_stats_json``) as a dict: cache
        hits and misses, bytes delivered and fetched by source kind, requests,
        retries, errors, downloads, latency histograms..."""
        return _stats_json(self._handle())

    # -- metadata ----------------------------------------------------------

    def files(self) -> List[FileInfo]:
        """The dataset's files in stream order (a plain URI has one)."""
        h = self._handle()
        if self._files is None:
            fi = POINTER(GTIO_FileInfo)()
            err = GTIO_Error()
            n = lib.gtio_get_file_list(h, byref(fi), byref(err))
            if n < 0:
                raise error_from(err, "gtio_get_file_list")
            try:
                out = []
                for i in range(n):
                    e = fi[i]
                    raw = e.name or b""
                    out.append(FileInfo(raw.decode("utf-8", "surrogateescape"), e.offset, e.size))
            finally:
                if n > 0:
                    lib.gtio_free_file_list(fi, n)
            self._files = tuple(out)
        return list(self._files)

    def file_info(self, name: str) -> FileInfo:
        """The :class:`FileInfo` of the file named ``name``
        (``FileNotFoundError`` if there is none)."""
        for f in self.files():
            if f.name == name:
                return f
        raise FileNotFoundError(errno.ENOENT, f"no file {name!r} in {self._name}")

    # -- reading -----------------------------------------------------------

    def _clamp(self, n: int, offset: int) -> int:
        return max(0, min(n, self._size - offset))

    def pread(self, n: int, offset: int) -> bytes:
        """Read up to ``n`` bytes at ``offset`` of the stream.

        Returns fewer bytes only at the end of the stream, ``b""`` at or past
        it. Blocks until the bytes are there, with the GIL released.
        """
        h = self._handle()
        n = _index(n, "n")
        offset = _index(offset, "offset")
        n = self._clamp(n, offset)
        if n == 0:
            return b""
        buf = (ctypes.c_char * n)()
        err = GTIO_Error()
        got = lib.gtio_pread(h, buf, n, offset, byref(err))
        if got < 0:
            raise error_from(err, "gtio_pread")
        return ctypes.string_at(buf, got)

    def preadinto(self, buffer: Any, offset: int) -> int:
        """Read into a writable buffer (bytearray, memoryview, array, mmap...)
        at ``offset`` of the stream; return the byte count (0 at the end)."""
        h = self._handle()
        offset = _index(offset, "offset")
        with memoryview(buffer) as mv:
            if mv.readonly:
                raise TypeError("preadinto() needs a writable buffer")
            with mv.cast("B") as b:
                n = self._clamp(len(b), offset)
                if n == 0:
                    return 0
                c = (ctypes.c_char * n).from_buffer(b)
                try:
                    err = GTIO_Error()
                    got = lib.gtio_pread(h, c, n, offset, byref(err))
                finally:
                    del c  # release the buffer export before the views close
                if got < 0:
                    raise error_from(err, "gtio_pread")
                return int(got)

    async def pread_async(self, n: int, offset: int, *, background: bool = False) -> bytes:
        """``await ds.pread_async(n, offset)``: :meth:`pread` for asyncio.

        The read runs in the library; its completion is taken on the event
        loop's thread (``loop.add_reader`` on the thread's completion ring).
        Cancelling the awaiting task cancels the read. ``background=True``
        queues it at normal instead of urgent priority.
        """
        h = self._handle()
        n = _index(n, "n")
        offset = _index(offset, "offset")
        n = self._clamp(n, offset)
        if n == 0:
            return b""
        return await _aio.pread_async(h, n, offset, background)

    def prefetch(self, offset: int, length: int) -> None:
        """Hint: start fetching ``length`` bytes at ``offset`` in the background."""
        h = self._handle()
        err = GTIO_Error()
        if lib.gtio_prefetch(h, _index(offset, "offset"), _index(length, "length"), byref(err)):
            raise error_from(err, "gtio_prefetch")

    def raw(self) -> "RawReader":
        """A seekable ``io.RawIOBase`` over the whole stream, with its own
        position and readahead (each call gives an independent reader)."""
        self._handle()
        return RawReader(self, 0, self._size, self._name)

    def open_file(
        self, name: Union[str, FileInfo], buffer_size: int = DEFAULT_BUFFER_SIZE
    ) -> io.BufferedReader:
        """An ``io.BufferedReader`` over one file of the dataset
        (``FileNotFoundError`` if there is no such file). Each call gives
        an independent reader with its own position and readahead window."""
        self._handle()
        fi = name if isinstance(name, FileInfo) else self.file_info(name)
        return io.BufferedReader(RawReader(self, fi.offset, fi.size, fi.name), buffer_size)


class RawReader(io.RawIOBase):
    """A read-only, seekable raw file over ``[start, start + length)`` of a
    dataset's stream: a library reader (``gtio_reader_open``) with its own
    position and its own readahead window, so several readers of one
    dataset never reset each other's readahead. Closing it does not close
    the dataset; closing the dataset makes it raise ``ValueError``."""

    def __init__(self, dataset: Dataset, start: int, length: int, name: str) -> None:
        super().__init__()
        self._ds = dataset
        self._length = length
        self._pos = 0
        self._r: Optional[int] = None
        self.name = name
        self.mode = "rb"
        err = GTIO_Error()
        r = lib.gtio_reader_open(dataset._handle(), start, length, byref(err))
        if not r:
            raise error_from(err, "gtio_reader_open")
        self._r = r

    def _check(self) -> int:
        if self.closed or self._r is None:
            raise ValueError("I/O operation on closed file.")
        self._ds._handle()  # ValueError once the dataset is closed
        return self._r

    @property
    def size(self) -> int:
        """Length of the file (or stream) in bytes."""
        return self._length

    def readable(self) -> bool:
        self._check()
        return True

    def seekable(self) -> bool:
        self._check()
        return True

    def writable(self) -> bool:
        self._check()
        return False

    def tell(self) -> int:
        self._check()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        r = self._check()
        offset = operator.index(offset)
        if whence not in (io.SEEK_SET, io.SEEK_CUR, io.SEEK_END):
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._length}[whence]
        if base + offset < 0:
            raise OSError(errno.EINVAL, f"negative seek position {base + offset}")
        err = GTIO_Error()
        pos = lib.gtio_reader_lseek(r, offset, whence, byref(err))
        if pos < 0:
            raise error_from(err, "gtio_reader_lseek")
        self._pos = int(pos)
        return self._pos

    def _remaining(self) -> int:
        return max(0, self._length - self._pos)

    def readinto(self, buffer: Any) -> int:
        r = self._check()
        with memoryview(buffer) as mv, mv.cast("B") as b:
            if mv.readonly:
                raise TypeError("readinto() needs a writable buffer")
            n = min(len(b), self._remaining())
            if n == 0:
                return 0
            c = (ctypes.c_char * n).from_buffer(b)
            try:
                err = GTIO_Error()
                got = lib.gtio_reader_read(r, c, n, byref(err))
            finally:
                del c  # release the buffer export before the views close
        if got < 0:
            raise error_from(err, "gtio_reader_read")
        self._pos += got
        return int(got)

    def read(self, size: Optional[int] = -1) -> bytes:
        r = self._check()
        if size is None or size < 0:
            return self.readall()
        n = min(size, self._remaining())
        if n == 0:
            return b""
        buf = (ctypes.c_char * n)()
        err = GTIO_Error()
        got = lib.gtio_reader_read(r, buf, n, byref(err))
        if got < 0:
            raise error_from(err, "gtio_reader_read")
        self._pos += got
        return ctypes.string_at(buf, got)

    def readall(self) -> bytes:
        self._check()
        return self.read(self._remaining())

    def close(self) -> None:
        r, self._r = self._r, None
        if r is not None:
            lib.gtio_reader_close(r, None)  # EBADF after gtio_lib_fini: fine
        super().close()

    def __repr__(self) -> str:
        return f"<gtio.RawReader name={self.name!r} size={self._length}>"


def open(
    uri: Union[str, bytes, "os.PathLike[str]"], cred: Optional[StrOrBytes] = None
) -> Dataset:
    """Open a dataset by URI: ``http://``, ``https://`` or ``file://``.

    A URI whose path ends in ``.torrent`` (or served as
    ``application/x-bittorrent``) opens the torrent it names. A local path
    (an ``os.PathLike``, or a string with no ``scheme://``, as the CLI takes
    it) is opened as a ``file://`` URI, so ``open("www/sample.torrent")``
    opens that torrent. ``cred`` is sent as
    ``Authorization: Bearer <cred>`` (as given if it starts with a scheme
    word) to the URI's host only. Blocks for the metadata request(s).

    Raises an ``OSError`` subclass on failure: ``FileNotFoundError`` for a
    404, ``PermissionError`` for 401/403, ...
    """
    if isinstance(uri, bytes) and b"://" not in uri:
        uri = os.fsdecode(uri)
    if isinstance(uri, os.PathLike) or (isinstance(uri, str) and "://" not in uri):
        from pathlib import Path

        uri = Path(os.fspath(uri)).resolve().as_uri()
    c_uri = _c_string(uri, "uri")
    c_cred = None if cred is None else _c_string(cred, "cred")
    err = GTIO_Error()
    h = lib.gtio_open_uri(c_uri, c_cred, byref(err))
    if not h:
        raise error_from(err, "gtio_open_uri")
    return Dataset(h, _display_name(c_uri.decode("utf-8", "replace")))


def open_gto(data: Any, cred: Optional[StrOrBytes] = None) -> Dataset:
    """Open a torrent from its bencoded metainfo (bytes-like, at most 64 MiB).

    Its files are read from the torrent's web seeds, to which ``cred`` (if
    any) is sent. Malformed metainfo raises ``OSError`` with errno ``EINVAL``.
    Never blocks on the network.
    """
    buf = data if isinstance(data, bytes) else bytes(memoryview(data))
    c_cred = None if cred is None else _c_string(cred, "cred")
    err = GTIO_Error()
    h = lib.gtio_open_gto(buf, len(buf), c_cred, byref(err))
    if not h:
        raise error_from(err, "gtio_open_gto")
    return Dataset(h, "<metainfo>")


def _stats_json(handle: Optional[int]) -> Dict[str, Any]:
    err = GTIO_Error()
    size = 1024
    while True:
        buf = ctypes.create_string_buffer(size)
        n = lib.gtio_stats_json(handle, buf, size, byref(err))
        if n < 0:
            raise error_from(err, "gtio_stats_json")
        if n < size:
            return json.loads(buf.value.decode("utf-8"))
        size = n + 1  # grew (or was too small): snprintf-style retry


def stats() -> Dict[str, Any]:
    """Process-wide statistics (every dataset opened so far, open or
    closed), as :meth:`Dataset.stats` gives them for one dataset."""
    return _stats_json(None)


def set_setting(name: str, value: Union[None, int, str, bytes, "os.PathLike[str]"]) -> None:
    """Set a library setting by name (``gtio_set_setting``): any setting of
    the design's table, e.g. ``cache_bytes``, ``block_size``, ``cred``,
    ``max_peers``. ``value`` is what its ``GTIO_*`` environment variable
    would hold (an int is written in decimal); ``None`` returns it to the
    default. A value set here beats the environment; :func:`init` keywords
    beat both. Sizing settings must be set before the library starts
    (``OSError`` ``EBUSY`` after); ``cred`` applies to later opens at once.
    ``peers=1`` raises ``OSError`` ``ENOTSUP`` in this version."""
    c_name = _c_string(name, "name")
    if value is None:
        c_value = None
    elif isinstance(value, int) and not isinstance(value, bool):
        c_value = str(value).encode()
    else:
        c_value = _c_string(value, "value")
    err = GTIO_Error()
    if lib.gtio_set_setting(c_name, c_value, byref(err)) != 0:
        raise error_from(err, "gtio_set_setting")


def version() -> str:
    """The library's version, e.g. ``"0.1.0"``."""
    v = lib.gtio_version()
    return v.decode("ascii", "replace") if v else "unknown"


_CONFIG_BITS: Dict[str, int] = {
    "cache_bytes": 64,
    "block_size": 32,
    "workers": 32,
    "max_conns_per_host": 32,
    "readahead_max_bytes": 64,
    "retries": 32,
    "timeout_ms": 32,
    "ring_entries": 32,
}


def default_config() -> Dict[str, Any]:
    """The library's default settings (``gtio_config_default``), as a dict
    of the keyword arguments :func:`init` takes."""
    from ._lib import GTIO_Config

    cfg = GTIO_Config()
    lib.gtio_config_default(byref(cfg))
    out: Dict[str, Any] = {k: getattr(cfg, k) for k in _CONFIG_BITS}
    out["ca_bundle"] = None
    return out


def init(**config: Any) -> None:
    """Start the library with settings (optional; call before anything else).

    Keywords are the fields of ``GTIO_Config``: ``cache_bytes``,
    ``block_size``, ``workers``, ``max_conns_per_host``,
    ``readahead_max_bytes``, ``retries``, ``timeout_ms``, ``ring_entries``
    (integers; 0 means the default) and ``ca_bundle`` (a PEM file path),
    plus ``cache_dir`` (a directory for the persistent piece store) and
    ``cache_dir_bytes`` (its bound), which ``GTIO_Config`` has no field for.
    Unnamed fields keep ``gtio_config_default``'s values. Once the library
    runs (any other gtio call starts it), this fails with ``OSError``
    ``EBUSY``. ``poller_thread`` is refused: Python takes completions on its
    event loop, never on a library thread.
    """
    from ._lib import GTIO_Config

    cfg = GTIO_Config()
    lib.gtio_config_default(byref(cfg))
    for key, value in config.items():
        if key == "poller_thread":
            if value:
                raise ValueError(
                    "poller_thread is not supported from Python: completions are "
                    "taken on the event loop's thread"
                )
            continue
        if key == "ca_bundle":
            cfg.ca_bundle = None if value is None else _c_string(value, "ca_bundle")
            continue
        if key in ("cache_dir", "cache_dir_bytes"):
            # No GTIO_Config field (its layout is fixed): set by name.
            set_setting(key, value)
            continue
        bits = _CONFIG_BITS.get(key)
        if bits is None:
            raise TypeError(f"init() got an unexpected keyword argument {key!r}")
        v = operator.index(value)
        if not 0 <= v < (1 << bits):
            raise ValueError(f"{key}={v} is out of range for a uint{bits}_t")
        setattr(cfg, key, v)
    err = GTIO_Error()
    if lib.gtio_lib_init(byref(cfg), byref(err)) != 0:
        raise error_from(err, "gtio_lib_init")
