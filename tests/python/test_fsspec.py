"""The fsspec filesystem (gtio/fsspec.py) under the real Python data stack:
pandas and pyarrow from PyPI read CSV and Parquet through it, frame for
frame against the local files; fsspec.open, ls, info and random access are
byte for byte; zipfile and tarfile read archives through its file objects.

The data is served by the session's nginx (conftest.py): plain objects and a
torrent made by mktorrent whose web seed is that nginx. The package is
imported from the checkout, so fsspec learns the protocols from the entry
points declared in python/pyproject.toml (parsed here, the same declaration
pip installs; test_packaging.py checks the installed entry points)."""

from __future__ import annotations

import io
import random
import subprocess
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

fsspec = pytest.importorskip("fsspec", reason="fsspec is in python/requirements-dev.txt")
pd = pytest.importorskip("pandas", reason="pandas is in python/requirements-dev.txt")
pa = pytest.importorskip("pyarrow", reason="pyarrow is in python/requirements-dev.txt")
import pyarrow.parquet as pq  # noqa: E402

from gtio.fsspec import GtioFile, GtioFileSystem  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _declared_protocols() -> dict:
    meta = tomllib.loads((REPO / "python" / "pyproject.toml").read_text())
    return meta["project"]["entry-points"]["fsspec.specs"]


@pytest.fixture(scope="module", autouse=True)
def registered():
    eps = _declared_protocols()
    assert set(eps) == {"gtio", "gtio+http", "gtio+https", "gtio+file"}
    for name, value in eps.items():
        fsspec.register_implementation(name, value.replace(":", "."), clobber=True)
    yield eps


@pytest.fixture(scope="module")
def data(server):
    """CSV, Parquet, zip and tar files: as plain objects under /fs/ and as
    members of /fs.torrent (mktorrent, web seed = nginx)."""
    root = server.root / "fs"
    (root / "tables").mkdir(parents=True)
    (root / "arch").mkdir()
    rng = random.Random(16)
    n = 20_000
    df = pd.DataFrame(
        {
            "id": range(n),
            "x": [rng.random() for _ in range(n)],
            "label": [f"row {i} {'é' if i % 7 == 0 else ''}" for i in range(n)],
        }
    )
    df.to_csv(root / "tables" / "a.csv", index=False)
    # several row groups, so a reader seeks to the footer and then to each group
    pq.write_table(pa.Table.from_pandas(df), root / "tables" / "a.parquet", row_group_size=3000)
    members = {f"m/{i}.bin": rng.randbytes(rng.randrange(1, 90_000)) for i in range(6)}
    with zipfile.ZipFile(root / "arch" / "z.zip", "w", zipfile.ZIP_DEFLATED) as zf:
        for name, blob in members.items():
            zf.writestr(name, blob)
    with tarfile.open(root / "arch" / "t.tar", "w") as tf:
        for name, blob in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            tf.addfile(info, io.BytesIO(blob))
    subprocess.run(
        ["mktorrent", "-l", "15", "-w", server.url("/"), "-o", str(server.root / "fs.torrent"), str(root)],
        cwd=server.root,
        check=True,
        capture_output=True,
    )
    return {"root": root, "df": df, "members": members, "base": server.url("")}


def gurl(data, rel: str) -> str:
    """The gtio+http URL of a plain object under /fs/."""
    return "gtio+" + data["base"] + "fs/" + rel


def member(data, rel: str) -> str:
    """The gtio+http URL of a member of /fs.torrent."""
    return "gtio+" + data["base"] + "fs.torrent#" + rel


def test_entry_points_name_the_filesystem(registered):
    for name in registered:
        assert fsspec.get_filesystem_class(name) is GtioFileSystem


@pytest.mark.parametrize("where", ["plain", "torrent"])
def test_pandas_read_csv(data, where):
    url = gurl(data, "tables/a.csv") if where == "plain" else member(data, "tables/a.csv")
    got = pd.read_csv(url)
    pd.testing.assert_frame_equal(got, pd.read_csv(data["root"] / "tables" / "a.csv"))
    pd.testing.assert_frame_equal(got, data["df"])


@pytest.mark.parametrize("where", ["plain", "torrent"])
def test_pandas_read_parquet(data, where):
    url = gurl(data, "tables/a.parquet") if where == "plain" else member(data, "tables/a.parquet")
    got = pd.read_parquet(url)
    pd.testing.assert_frame_equal(got, pd.read_parquet(data["root"] / "tables" / "a.parquet"))
    pd.testing.assert_frame_equal(got, data["df"])


def test_pyarrow_parquet_filesystem_and_row_groups(data):
    fs = fsspec.filesystem("gtio")
    url = member(data, "tables/a.parquet")
    table = pq.read_table(url, filesystem=fs)
    assert table.equals(pq.read_table(data["root"] / "tables" / "a.parquet"))
    # random access: one row group read through a file object
    with fs.open(url) as f:
        assert isinstance(f, GtioFile)
        pf = pq.ParquetFile(f)
        assert pf.metadata.num_row_groups == 7
        rg = pf.read_row_group(5).to_pandas()
    pd.testing.assert_frame_equal(rg, data["df"].iloc[15000:18000].reset_index(drop=True))


def test_fsspec_open_random_access_byte_for_byte(data):
    local = (data["root"] / "tables" / "a.parquet").read_bytes()
    rng = random.Random(3)
    for url in (gurl(data, "tables/a.parquet"), member(data, "tables/a.parquet")):
        with fsspec.open(url, "rb") as f:
            assert f.seekable()
            assert f.read() == local
            for _ in range(50):
                off = rng.randrange(len(local) + 10)
                n = rng.randrange(70_000)
                f.seek(off)
                assert f.read(n) == local[off : off + n]
                assert f.tell() == min(off + n, len(local)) or off > len(local)
            f.seek(-100, io.SEEK_END)
            assert f.read() == local[-100:]
        fs, path = fsspec.core.url_to_fs(url)
        assert fs.cat_file(path, 1000, 5000) == local[1000:5000]
        assert fs.cat_file(path, -10) == local[-10:]


def test_ls_and_info_list_the_torrent(data):
    fs = fsspec.filesystem("gtio")
    top = "gtio+" + data["base"] + "fs.torrent"
    names = {e["name"]: e["type"] for e in fs.ls(top)}
    base = data["base"] + "fs.torrent#"
    assert names == {base + "arch": "directory", base + "tables": "directory"}
    tables = fs.ls(top + "#tables", detail=True)
    want = {p.name: p.stat().st_size for p in (data["root"] / "tables").iterdir()}
    assert {e["name"].rpartition("/")[2]: e["size"] for e in tables} == want
    assert all(e["type"] == "file" for e in tables)
    assert fs.info(top)["type"] == "directory"
    assert fs.info(top + "#tables/")["type"] == "directory"
    info = fs.info(member(data, "arch/z.zip"))
    assert info["type"] == "file" and info["size"] == (data["root"] / "arch" / "z.zip").stat().st_size
    assert fs.isfile(member(data, "tables/a.csv")) and fs.isdir(top + "#arch")
    found = sorted(p.rpartition("#")[2] for p in fs.find(top))
    assert found == ["arch/t.tar", "arch/z.zip", "tables/a.csv", "tables/a.parquet"]
    assert fs.unstrip_protocol(tables[0]["name"]).startswith("gtio+http://")
    with pytest.raises(FileNotFoundError, match="no/such.csv"):
        fs.info(member(data, "no/such.csv"))
    with pytest.raises(FileNotFoundError):
        pd.read_csv(member(data, "tables/missing.csv"))
    # a plain object is one file, not a directory
    plain = fs.ls(gurl(data, "tables/a.csv"))
    assert [(e["type"], e["size"]) for e in plain] == [("file", want["a.csv"])]


def test_zipfile_and_tarfile_through_fsspec_files(data):
    fs = fsspec.filesystem("gtio")
    for url in (member(data, "arch/z.zip"), gurl(data, "arch/z.zip")):
        with fs.open(url) as f, zipfile.ZipFile(f) as zf:
            assert sorted(zf.namelist()) == sorted(data["members"])
            for name, blob in data["members"].items():
                assert zf.read(name) == blob
            assert zf.testzip() is None
    with fs.open(member(data, "arch/t.tar")) as f, tarfile.open(fileobj=f) as tf:
        for m in tf.getmembers():
            assert tf.extractfile(m).read() == data["members"][m.name]


def test_gtio_scheme_takes_a_uri_or_a_local_path(data, server, monkeypatch):
    local = (data["root"] / "tables" / "a.csv").read_bytes()
    with fsspec.open("gtio://" + data["base"] + "fs/tables/a.csv") as f:
        assert f.read() == local
    # a local .torrent, relative to the working directory; its web seed is nginx
    monkeypatch.chdir(server.root)
    with fsspec.open("gtio://fs.torrent#tables/a.csv") as f:
        assert f.read() == local
    with fsspec.open("gtio+file://" + str(data["root"] / "tables" / "a.csv")) as f:
        assert f.read() == local


def test_read_only(data):
    fs = fsspec.filesystem("gtio")
    with pytest.raises(PermissionError):
        fs.open(member(data, "tables/a.csv"), "wb")
    with pytest.raises(PermissionError):
        fs.rm_file(member(data, "tables/a.csv"))
    with pytest.raises(IsADirectoryError):
        fs.open("gtio+" + data["base"] + "fs.torrent#tables")


def test_cred_from_storage_options(data, server):
    url = "gtio+" + data["base"] + "auth/fs/tables/a.csv"
    got = pd.read_csv(url, storage_options={"cred": server.token})
    pd.testing.assert_frame_equal(got, data["df"])
    with pytest.raises(PermissionError) as e:
        pd.read_csv(url)
    assert server.token not in str(e.value)
    with pytest.raises(PermissionError):
        fsspec.filesystem("gtio", cred="wrong").cat_file(url)
