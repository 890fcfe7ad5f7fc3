"""Loading ``libgtio.so`` and declaring its C ABI for ctypes.

Internal module: everything here mirrors ``include/gtio.h`` exactly. Every
function the package calls has its ``argtypes`` and ``restype`` declared, so
ctypes never guesses an ``int`` for a 64-bit value or a pointer.

The library is looked up, in order:

1. ``$GTIO_LIBRARY`` (a path to the shared object) — if set, nothing else
   is tried: it is the override for development and for testing one build;
2. the copy bundled inside this package, ``_libgtio.abi3.so`` (what
   ``pip install ./python`` and a wheel from ``make wheel`` put there), or a
   ``libgtio.so`` copied next to this file by hand;
3. the build tree this package sits in, ``<repo>/target/release/libgtio.so``,
   when it is imported from a checkout (``PYTHONPATH=python``);
4. the system's dynamic loader search path (``libgtio.so.0``, then
   ``libgtio.so``), for a ``make install``.

A failure says what was tried and why each failed, and how to get a library.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from ctypes import (
    POINTER,
    Structure,
    c_char,
    c_char_p,
    c_int32,
    c_int64,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from pathlib import Path
from typing import List, NoReturn, Optional, Tuple

__all__ = [
    "GTIO_NAME_MAX",
    "GTIO_READ_BACKGROUND",
    "GTIO_Error",
    "GTIO_Config",
    "GTIO_FileInfo",
    "GTIO_Dirent",
    "gtio_usercb_t",
    "gtio_usercomp_t",
    "lib",
    "library_path",
    "make_error",
    "raise_error",
]

GTIO_NAME_MAX = 4096
GTIO_READ_BACKGROUND = 1


class GTIO_Error(Structure):
    """``struct GTIO_Error``: why a call failed (filled only on failure)."""

    _fields_ = [
        ("code", c_int32),
        ("http_status", c_int32),
        ("message", c_char * 512),
    ]


class GTIO_Config(Structure):
    """``struct GTIO_Config``: library settings for ``gtio_lib_init``."""

    _fields_ = [
        ("cache_bytes", c_uint64),
        ("block_size", c_uint32),
        ("workers", c_uint32),
        ("max_conns_per_host", c_uint32),
        ("readahead_max_bytes", c_uint64),
        ("retries", c_uint32),
        ("timeout_ms", c_uint32),
        ("ring_entries", c_uint32),
        ("poller_thread", c_int32),
        ("ca_bundle", c_char_p),
    ]


class GTIO_FileInfo(Structure):
    """``struct GTIO_FileInfo``: one file of a dataset."""

    _fields_ = [
        ("name", c_char_p),
        ("offset", c_uint64),
        ("size", c_uint64),
    ]


class GTIO_Dirent(Structure):
    """``struct GTIO_Dirent``: one entry of ``gtio_readdir``."""

    _fields_ = [
        ("name", c_char * GTIO_NAME_MAX),
        ("offset", c_uint64),
        ("size", c_uint64),
    ]


class gtio_usercb_t(Structure):
    """``struct gtio_usercb``: an asynchronous read's callback block."""


# void (*cb_func)(struct gtio_usercb *ucb). The package always leaves it NULL:
# no library thread ever calls into Python.
USERCB_FUNC = ctypes.CFUNCTYPE(None, POINTER(gtio_usercb_t))
gtio_usercb_t._fields_ = [
    ("cb_func", USERCB_FUNC),
    ("cb_data", c_void_p),
    ("ret", c_int64),
]

# void (*ucp_fun)(int64_t res, void *arg): a function inside the library.
USERCOMP_FUNC = ctypes.CFUNCTYPE(None, c_int64, c_void_p)


class gtio_usercomp_t(Structure):
    """``struct gtio_usercomp``: one completion taken by ``gtio_poll``."""

    _fields_ = [
        ("ucp_fun", USERCOMP_FUNC),
        ("ucp_res", c_int64),
        ("ucp_arg", c_void_p),
    ]


_ERR = POINTER(GTIO_Error)
_H = c_void_p  # GTIO * and GTIO_Dir *: opaque handles

# name: (restype, argtypes) — exactly as in include/gtio.h
_PROTOTYPES = {
    "gtio_config_default": (None, [POINTER(GTIO_Config)]),
    "gtio_lib_init": (c_int32, [POINTER(GTIO_Config), _ERR]),
    "gtio_lib_fini": (c_int32, [_ERR]),
    "gtio_version": (c_char_p, []),
    "gtio_open_gto": (_H, [c_void_p, c_size_t, c_char_p, _ERR]),
    "gtio_open_uri": (_H, [c_char_p, c_char_p, _ERR]),
    "gtio_close": (c_int32, [_H, _ERR]),
    "gtio_read": (c_int64, [_H, c_void_p, c_size_t, _ERR]),
    "gtio_pread": (c_int64, [_H, c_void_p, c_size_t, c_uint64, _ERR]),
    "gtio_lseek": (c_int64, [_H, c_int64, c_int32, _ERR]),
    "gtio_size": (c_int64, [_H, _ERR]),
    "gtio_prefetch": (c_int32, [_H, c_uint64, c_uint64, _ERR]),
    "gtio_get_file_list": (c_int64, [_H, POINTER(POINTER(GTIO_FileInfo)), _ERR]),
    "gtio_free_file_list": (None, [POINTER(GTIO_FileInfo), c_int64]),
    "gtio_opendir": (_H, [_H, _ERR]),
    "gtio_readdir": (c_int32, [_H, POINTER(GTIO_Dirent), _ERR]),
    "gtio_closedir": (c_int32, [_H, _ERR]),
    "gtio_pread_async": (
        c_int32,
        [_H, c_void_p, c_size_t, c_uint64, c_uint32, POINTER(gtio_usercb_t), _ERR],
    ),
    "gtio_poll": (c_int32, [POINTER(gtio_usercomp_t), c_int32]),
    "gtio_poll_fd": (c_int32, []),
    "gtio_cancel": (c_int32, [_H, POINTER(gtio_usercb_t), _ERR]),
}


def _bundled(here: Path) -> List[Path]:
    """Libraries shipped inside the package: setuptools-rust's
    ``_libgtio.abi3.so`` (or a per-version ``_libgtio.cpython-*.so`` from a
    build without the abi3 tag), then a hand-copied ``libgtio.so``."""
    found = sorted(here.glob("_libgtio*.so"), key=lambda p: ".abi3." not in p.name)
    return found + [here / "libgtio.so"]


def _candidates() -> List[Tuple[str, str]]:
    """(how to load, description) pairs, in search order."""
    here = Path(__file__).resolve().parent
    out: List[Tuple[str, str]] = [(str(p), "bundled in the package") for p in _bundled(here)]
    # python/gtio/_lib.py -> <repo>/target/release/libgtio.so, only when this
    # file really is in a checkout (an installed package has no Cargo.toml
    # two levels up, and must not pick a stray library from site-packages/..).
    repo = here.parent.parent
    if (repo / "Cargo.toml").is_file():
        out.append((str(repo / "target" / "release" / "libgtio.so"), "the build tree"))
    out.append(("libgtio.so.0", "the system library path"))
    out.append(("libgtio.so", "the system library path"))
    return out


def _load() -> Tuple[ctypes.CDLL, str]:
    env = os.environ.get("GTIO_LIBRARY")
    if env:
        try:
            return ctypes.CDLL(env, use_errno=True), env
        except OSError as e:
            raise ImportError(
                f"gtio: cannot load the library named by GTIO_LIBRARY={env!r}: {e}. "
                "Point GTIO_LIBRARY at a libgtio.so, or unset it to use the "
                "package's own copy."
            ) from e
    tried: List[str] = []
    for spec, where in _candidates():
        if os.sep in spec and not os.path.exists(spec):
            tried.append(f"  {spec} ({where}): not found")
            continue
        try:
            return ctypes.CDLL(spec, use_errno=True), spec
        except OSError as e:
            tried.append(f"  {spec} ({where}): {e}")
    raise ImportError(
        "gtio: cannot find libgtio.so. This copy of the package has no library "
        "inside it (was it imported from a source tree, or installed without "
        "building?). Either reinstall it with `pip install ./python` from a gtio "
        "checkout (needs cargo), install a wheel from `make wheel`, run "
        "`make install` for the system library, or set GTIO_LIBRARY to the path "
        "of a libgtio.so. Tried:\n" + "\n".join(tried)
    )


def _declare(cdll: ctypes.CDLL, path: str) -> None:
    for name, (restype, argtypes) in _PROTOTYPES.items():
        try:
            fn = getattr(cdll, name)
        except AttributeError:
            raise ImportError(
                f"gtio: {path} has no symbol {name} (an old or foreign build?)"
            ) from None
        fn.restype = restype
        fn.argtypes = argtypes


lib, library_path = _load()
_declare(lib, library_path)


def make_error(code: int, message: str = "", http_status: int = 0) -> OSError:
    """Build the ``OSError`` for an errno, as ``OSError(errno, message)``.

    Python picks the subclass from the errno (ENOENT gives
    ``FileNotFoundError``, EACCES ``PermissionError``, ETIMEDOUT
    ``TimeoutError``, ...). The exception carries ``http_status`` (0 when no
    HTTP status was involved).
    """
    if code <= 0:
        code = _errno.EIO
    if not message:
        message = os.strerror(code)
    exc = OSError(code, message)
    exc.http_status = http_status  # type: ignore[attr-defined]
    return exc


def error_from(err: GTIO_Error, what: Optional[str] = None) -> OSError:
    """The ``OSError`` for a filled ``GTIO_Error``."""
    message = err.message.decode("utf-8", "replace")
    if what and not message:
        message = f"{what}: {os.strerror(err.code or _errno.EIO)}"
    return make_error(err.code, message, err.http_status)


def raise_error(err: GTIO_Error, what: Optional[str] = None) -> NoReturn:
    """Raise :func:`error_from` ``(err)``."""
    raise error_from(err, what)
