"""An fsspec filesystem over gtio, so the Python data stack reads through it.

Registered with fsspec through the ``fsspec.specs`` entry point (see
``pyproject.toml``), under four protocol names:

- ``gtio+https://host/a.parquet``, ``gtio+http://…``, ``gtio+file:///…``: the
  URI after ``gtio+``, as the htslib plugin spells it;
- ``gtio://X``: anything :func:`gtio.open` takes, a URI or a local path
  (``gtio://https://host/a.csv``, ``gtio://www/sample.torrent#lines.txt``,
  ``gtio:///abs/path/set.torrent``).

A torrent is a directory: ``…/set.torrent`` lists its files, and
``…/set.torrent#dir/a.csv`` names one of them (the path as
:meth:`gtio.Dataset.files` gives it, without the torrent's name, taken
literally: no percent-decoding). A plain object is a single file. So::

    import fsspec, pandas as pd
    pd.read_csv("gtio+https://host/set.torrent#tables/a.csv")
    pd.read_parquet("gtio+https://host/a.parquet")
    fs = fsspec.filesystem("gtio")
    fs.ls("gtio+https://host/set.torrent")          # its files and directories
    with fs.open("gtio+https://host/x.zip") as f:   # seekable, random access
        zipfile.ZipFile(f).namelist()

Paths inside the filesystem (what ``ls`` returns) are the plain URIs,
``https://host/set.torrent#tables/a.csv``; ``unstrip_protocol`` puts the
``gtio+`` back. ``storage_options={"cred": TOKEN}`` sends a credential to
every dataset's host, as ``gtio.open(uri, cred=TOKEN)`` does.

Each dataset is opened once per filesystem instance and kept open (its
metadata request is paid once; reads of its files share the library's piece
cache). Files opened here read with ``cache_type="none"`` by default: the
library already caches and reads ahead by pieces, and a second cache in
Python would only copy the bytes once more. The filesystem is read-only.

A target is a torrent when its path ends in ``.torrent``, or when the library
opened it as one (its file list is not the single file a plain object has,
named after the URI's last segment, e.g. a ``.torrent`` served under another
name as ``application/x-bittorrent``).
"""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple
from urllib.parse import unquote, urlsplit

from fsspec.spec import AbstractBufferedFile, AbstractFileSystem

from . import _dataset
from ._dataset import Dataset

__all__ = ["GtioFileSystem", "GtioFile"]

_PREFIX = "gtio+"


def _has_scheme(s: str) -> bool:
    head, sep, _ = s.partition("://")
    return bool(sep) and head.replace("+", "").replace("-", "").replace(".", "").isalnum()


class GtioFileSystem(AbstractFileSystem):
    """Read-only fsspec filesystem: plain objects and torrent members through gtio."""

    protocol = ("gtio", "gtio+https", "gtio+http", "gtio+file")
    root_marker = ""

    def __init__(self, cred: Optional[str] = None, **storage_options: Any) -> None:
        super().__init__(cred=cred, **storage_options)
        self._cred = cred
        self._lock = threading.Lock()
        self._datasets: Dict[str, Dataset] = {}
        self._listings: Dict[str, Dict[str, Dict[str, Any]]] = {}

    # -- paths ---------------------------------------------------------------

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        """``gtio+SCHEME://rest`` -> ``SCHEME://rest``; ``gtio://X`` -> X as a
        URI (a local path becomes absolute ``file://``); a trailing ``/`` of a
        member directory goes."""
        if isinstance(path, list):
            return [cls._strip_protocol(p) for p in path]
        from fsspec.utils import stringify_path

        path = stringify_path(path)
        if path.startswith("gtio://"):
            path = path[len("gtio://") :]
            if not _has_scheme(path):
                local, sep, member = path.partition("#")
                path = Path(local).resolve().as_uri() + sep + member
        elif path.startswith(_PREFIX) and _has_scheme(path):
            path = path[len(_PREFIX) :]
        elif path.startswith("gtio::"):
            path = path[len("gtio::") :]
        target, sep, member = path.partition("#")
        return target + sep + member.strip("/") if sep else target

    def unstrip_protocol(self, name: str) -> str:
        if name.startswith(_PREFIX) or name.startswith("gtio://"):
            return name
        if _has_scheme(name):
            return _PREFIX + name
        return "gtio://" + name

    @classmethod
    def _parent(cls, path: str) -> str:
        path = cls._strip_protocol(path)
        target, sep, member = path.partition("#")
        if sep and member:
            parent = member.rpartition("/")[0]
            return target + "#" + parent if parent else target
        return super()._parent(target)

    @staticmethod
    def _split(path: str) -> Tuple[str, str]:
        target, _, member = path.partition("#")
        return target, member

    # -- datasets ------------------------------------------------------------

    def _dataset(self, target: str) -> Dataset:
        with self._lock:
            ds = self._datasets.get(target)
        if ds is not None and not ds.closed:
            return ds
        ds = _dataset.open(target, cred=self._cred)
        with self._lock:
            old = self._datasets.get(target)
            if old is not None and not old.closed:
                ds.close()  # another thread opened it meanwhile
                return old
            self._datasets[target] = ds
        return ds

    def _is_torrent(self, target: str, ds: Dataset) -> bool:
        path = urlsplit(target).path
        if path.lower().endswith(".torrent"):
            return True
        files = ds.files()
        last = unquote(path.rstrip("/").rpartition("/")[2]) or "index"
        plain = len(files) == 1 and files[0].offset == 0 and files[0].size == ds.size
        return not (plain and files[0].name in (last, path.rpartition("/")[2]))

    def _listing(self, target: str) -> Dict[str, Dict[str, Any]]:
        """Every entry of a target by member path ('' is the target itself)."""
        with self._lock:
            cached = self._listings.get(target)
        if cached is not None:
            return cached
        ds = self._dataset(target)
        entries: Dict[str, Dict[str, Any]] = {}
        if not self._is_torrent(target, ds):
            entries[""] = {"name": target, "size": ds.size, "type": "file", "offset": 0}
        else:
            entries[""] = {"name": target, "size": 0, "type": "directory"}
            for f in ds.files():
                entries[f.name] = {
                    "name": f"{target}#{f.name}",
                    "size": f.size,
                    "type": "file",
                    "offset": f.offset,
                }
                parts = f.name.split("/")
                for i in range(1, len(parts)):
                    d = "/".join(parts[:i])
                    entries.setdefault(
                        d, {"name": f"{target}#{d}", "size": 0, "type": "directory"}
                    )
        with self._lock:
            self._listings[target] = entries
        return entries

    def _entry(self, path: str) -> Dict[str, Any]:
        target, member = self._split(self._strip_protocol(path))
        entry = self._listing(target).get(member)
        if entry is None:
            what = f"{member!r} in {_dataset._display_name(target)}"
            raise FileNotFoundError(errno.ENOENT, f"no file or directory {what}")
        return entry

    # -- the fsspec interface ------------------------------------------------

    def info(self, path: str, **kwargs: Any) -> Dict[str, Any]:
        return dict(self._entry(path))

    def ls(self, path: str, detail: bool = True, **kwargs: Any) -> List[Any]:
        entry = self._entry(path)
        if entry["type"] == "file":
            out = [dict(entry)]
        else:
            target, member = self._split(self._strip_protocol(path))
            prefix = member + "/" if member else ""
            out = [
                dict(e)
                for m, e in self._listing(target).items()
                if m and m.startswith(prefix) and "/" not in m[len(prefix) :]
            ]
        return out if detail else [e["name"] for e in out]

    def ukey(self, path: str) -> str:
        e = self._entry(path)
        return f"{e['name']}:{e['size']}"

    def cat_file(
        self, path: str, start: Optional[int] = None, end: Optional[int] = None, **kwargs: Any
    ) -> bytes:
        entry = self._entry(path)
        if entry["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, f"{path} is a directory")
        size = entry["size"]
        s = 0 if start is None else (start if start >= 0 else max(0, size + start))
        e = size if end is None else (end if end >= 0 else max(0, size + end))
        s, e = min(s, size), min(e, size)
        if e <= s:
            return b""
        target, _ = self._split(self._strip_protocol(path))
        return self._dataset(target).pread(e - s, entry["offset"] + s)

    def _open(
        self,
        path: str,
        mode: str = "rb",
        block_size: Optional[int] = None,
        autocommit: bool = True,
        cache_options: Optional[Dict[str, Any]] = None,
        cache_type: str = "none",
        **kwargs: Any,
    ) -> "GtioFile":
        if mode != "rb":
            raise PermissionError(errno.EROFS, f"gtio is read-only (mode {mode!r})")
        entry = self._entry(path)
        if entry["type"] != "file":
            raise IsADirectoryError(errno.EISDIR, f"{path} is a directory")
        target, _ = self._split(self._strip_protocol(path))
        return GtioFile(
            self,
            entry["name"],
            self._dataset(target),
            entry["offset"],
            entry["size"],
            block_size=block_size,
            cache_type=cache_type,
            cache_options=cache_options,
        )

    def close(self) -> None:
        """Close the datasets this filesystem opened."""
        with self._lock:
            datasets, self._datasets = list(self._datasets.values()), {}
            self._listings = {}
        for ds in datasets:
            ds.close()

    # read-only: every writing call of AbstractFileSystem fails the same way
    def _readonly(self, *args: Any, **kwargs: Any) -> None:
        raise PermissionError(errno.EROFS, "gtio is read-only")

    mkdir = makedirs = rmdir = rm_file = _rm = cp_file = mv = touch = put_file = _readonly
    pipe_file = _readonly


class GtioFile(AbstractBufferedFile):
    """A seekable read-only file: bytes ``[offset, offset + size)`` of a
    dataset's stream, read with :meth:`gtio.Dataset.pread`."""

    def __init__(
        self,
        fs: GtioFileSystem,
        path: str,
        dataset: Dataset,
        offset: int,
        size: int,
        **kwargs: Any,
    ) -> None:
        self._ds = dataset
        self._base = offset
        super().__init__(fs, path, mode="rb", size=size, **kwargs)

    def _fetch_range(self, start: int, end: int) -> bytes:
        end = min(end, self.size)
        if end <= start:
            return b""
        return self._ds.pread(end - start, self._base + start)
