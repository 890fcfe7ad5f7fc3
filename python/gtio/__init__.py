"""gtio — random and streaming byte-range access to remote datasets.

A pure-ctypes binding of ``libgtio`` (the Rust library's C ABI,
``include/gtio.h``). A dataset is a plain object behind an ``http://``,
``https://`` or ``file://`` URI, or a BitTorrent metainfo (``.torrent``)
whose files are fetched piece by piece from its web seeds and verified
against their SHA-1. Either way it is one byte stream, its files laid end to
end.

Install and use::

    $ pip install ./python            # builds libgtio into the package (needs cargo)
    $ make wheel                      # or a wheel: target/wheels/gtio-*-abi3-*.whl

    import asyncio, zipfile, gtio

    with gtio.open("https://host/data/x.torrent") as ds:   # or a plain URI
        print(ds.size, ds.files())        # [FileInfo(name, offset, size), ...]
        head = ds.pread(4096, 0)          # bytes; the GIL is released meanwhile
        with ds.open_file("dir/a.bam") as f:   # io.BufferedReader over one file
            magic = f.read(4)
        zf = zipfile.ZipFile(gtio.open("https://host/x.zip").raw())  # io.RawIOBase

    async def main(ds):
        # completions are taken on the event loop thread (loop.add_reader)
        return await asyncio.gather(*(ds.pread_async(65536, i << 16) for i in range(100)))

    ds = gtio.open_gto(open("x.torrent", "rb").read(), cred="token")

Errors are ``OSError`` subclasses chosen by errno — ``FileNotFoundError``
(404/410), ``PermissionError`` (401/403), ``TimeoutError``... — with the
library's message and an ``http_status`` attribute (0 when no HTTP status
was involved). A closed dataset raises ``ValueError``, as a closed file does.

The shared library is found through ``$GTIO_LIBRARY``, else the copy
bundled in this package (``_libgtio.abi3.so``), else the build tree when
imported from a checkout (``<repo>/target/release``), else the system library
path. ``gtio.fsspec`` is an fsspec filesystem (``gtio+https://…``, registered
by entry point); ``python -m gtio`` lists and reads datasets. :func:`init` (optional, before any other call)
passes settings such as ``cache_bytes`` or ``ring_entries`` to the library.
"""

from __future__ import annotations

from ._dataset import (
    DEFAULT_BUFFER_SIZE,
    Dataset,
    FileInfo,
    RawReader,
    default_config,
    init,
    open,
    open_gto,
    version,
)
from ._lib import library_path

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "Dataset",
    "FileInfo",
    "RawReader",
    "default_config",
    "init",
    "library_path",
    "open",
    "open_gto",
    "version",
    "__version__",
]
