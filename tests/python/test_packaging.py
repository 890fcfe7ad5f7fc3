"""The Python package as a user installs it (issue 16, item 1).

`pip install ./python[fsspec]` into a fresh virtual environment (the real
command, with pip's build isolation: setuptools-rust comes from PyPI) builds
libgtio into the package; then, from a directory outside the checkout and
with no GTIO_LIBRARY, `import gtio` loads the bundled copy and reads a file
served by `gtio serve`, fsspec finds the `gtio` protocols through the
installed entry points, and `python -m gtio` lists and reads. `make wheel`
builds an abi3 wheel into target/wheels whose metadata carries Cargo.toml's
version and licence and whose library has no debug sections.

Cost: both builds reuse this checkout's target directory (CARGO_TARGET_DIR),
which `make test` has just built, so cargo only checks that it is fresh.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GTIO = REPO / "target" / "release" / "gtio"


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("GTIO_LIBRARY", "PYTHONPATH", "VIRTUAL_ENV")}
    env["CARGO_TARGET_DIR"] = str(REPO / "target")
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env


def _run(cmd, **kw):
    kw.setdefault("timeout", 900)
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert p.returncode == 0, f"{cmd} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}"
    return p


def _cargo_field(name: str) -> str:
    m = re.search(rf'^{name}\s*=\s*"([^"]+)"', (REPO / "Cargo.toml").read_text(), re.M)
    assert m
    return m.group(1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """`gtio serve` over a directory with one small file; yields (url, bytes)."""
    if not GTIO.exists():
        pytest.fail(f"{GTIO} is missing: run `make build` first")
    root = tmp_path_factory.mktemp("pkg-www")
    payload = bytes(range(256)) * 40 + b"tail"
    (root / "small.bin").write_bytes(payload)
    proc = subprocess.Popen(
        [str(GTIO), "-q", "serve", str(root), "--addr", "127.0.0.1:0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        base = proc.stdout.readline().strip()
        assert base.startswith("http://127.0.0.1:"), base
        yield base.rstrip("/") + "/small.bin", payload
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture(scope="module")
def venv(tmp_path_factory) -> Path:
    """A fresh venv with `pip install ./python[fsspec]` done in it."""
    d = tmp_path_factory.mktemp("pkg-venv") / "venv"
    base_python = getattr(sys, "_base_executable", None) or sys.executable
    _run([base_python, "-m", "venv", d])
    py = d / "bin" / "python"
    _run([py, "-m", "pip", "install", "-q", f"{REPO / 'python'}[fsspec]"], env=_env(), cwd=d.parent)
    return py


READ = r"""
import sys, gtio, fsspec
url, n = sys.argv[1], int(sys.argv[2])
print(gtio.library_path)
with gtio.open(url) as ds:
    print(ds.pread(16, 3).hex())
    assert ds.size == n, ds.size
with fsspec.open("gtio+" + url) as f:
    f.seek(n - 4)
    assert f.read() == b"tail"
print(fsspec.get_filesystem_class("gtio+https").__module__)
"""


def test_pip_install_then_import_reads_with_no_environment(venv, served, tmp_path):
    url, payload = served
    out = _run([venv, "-c", READ, url, len(payload)], env=_env(), cwd=tmp_path).stdout
    lib_path, head, module = out.split()
    site = subprocess.run(
        [venv, "-c", "import sysconfig; print(sysconfig.get_paths()['platlib'])"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    assert lib_path == os.path.join(site, "gtio", "_libgtio.abi3.so"), lib_path
    assert bytes.fromhex(head) == payload[3:19]
    assert module == "gtio.fsspec"

    # python -m gtio: ls and cat through the installed package
    ls = _run([venv, "-m", "gtio", "ls", url], env=_env(), cwd=tmp_path).stdout
    assert re.search(rf"^\s*0\s+{len(payload)}\s+small\.bin$", ls, re.M), ls
    cat = subprocess.run(
        [venv, "-m", "gtio", "cat", url, "--offset", "10", "--length", "7"],
        env=_env(), cwd=tmp_path, capture_output=True, check=True, timeout=60,
    ).stdout
    assert cat == payload[10:17]
    info = _run([venv, "-m", "gtio", "info"], env=_env(), cwd=tmp_path).stdout
    assert "_libgtio.abi3.so" in info and _cargo_field("version") in info


def test_without_a_library_the_error_says_what_to_do(venv, tmp_path):
    # the installed package with its library removed: a copy of it elsewhere
    site = Path(_run([venv, "-c", "import gtio, os; print(os.path.dirname(gtio.__file__))"],
                     env=_env(), cwd=tmp_path).stdout.strip())
    pkg = tmp_path / "bare" / "gtio"
    shutil.copytree(site, pkg, ignore=shutil.ignore_patterns("_libgtio*", "__pycache__"))
    env = _env()
    env["PYTHONPATH"] = str(pkg.parent)
    env["LD_LIBRARY_PATH"] = ""
    p = subprocess.run([venv, "-c", "import gtio"], env=env, cwd=tmp_path, capture_output=True, text=True)
    if p.returncode == 0:
        pytest.skip("a system libgtio.so is installed (make install): the fallback worked")
    assert "cannot find libgtio.so" in p.stderr
    for hint in ("pip install ./python", "make wheel", "GTIO_LIBRARY"):
        assert hint in p.stderr, p.stderr
    env["GTIO_LIBRARY"] = str(tmp_path / "nope.so")
    p = subprocess.run([venv, "-c", "import gtio"], env=env, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode != 0 and "GTIO_LIBRARY=" in p.stderr and "nope.so" in p.stderr


def test_make_wheel(venv, served, tmp_path):
    _run(["make", "--no-print-directory", "-C", REPO, "wheel"], env=_env())
    version = _cargo_field("version")
    wheels = sorted((REPO / "target" / "wheels").glob(f"gtio-{version}-*.whl"), key=os.path.getmtime)
    assert wheels, "make wheel wrote no wheel"
    whl = wheels[-1]
    assert whl.name == f"gtio-{version}-cp39-abi3-linux_x86_64.whl", whl.name
    with zipfile.ZipFile(whl) as zf:
        names = zf.namelist()
        assert "gtio/_libgtio.abi3.so" in names and "gtio/fsspec.py" in names
        assert "gtio/__main__.py" in names and "gtio/py.typed" in names
        meta = zf.read(f"gtio-{version}.dist-info/METADATA").decode()
        eps = zf.read(f"gtio-{version}.dist-info/entry_points.txt").decode()
        so = zf.read("gtio/_libgtio.abi3.so")
    assert f"\nVersion: {version}\n" in meta
    assert "\nLicense: MIT OR Apache-2.0\n" in meta or "\nLicense-Expression: MIT OR Apache-2.0\n" in meta
    for proto in ("gtio", "gtio+http", "gtio+https", "gtio+file"):
        assert f"{proto} = gtio.fsspec:GtioFileSystem" in eps
    lib = tmp_path / "lib.so"
    lib.write_bytes(so)
    sections = _run(["readelf", "-SW", lib]).stdout
    assert ".text" in sections and ".debug_info" not in sections, "the bundled library keeps debug info"
    assert len(so) < 12 << 20, f"bundled library is {len(so)} bytes"

    # the wheel installs and works on its own, too
    _run([venv, "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall", whl], env=_env())
    url, payload = served
    out = _run([venv, "-c", READ, url, len(payload)], env=_env(), cwd=tmp_path).stdout
    assert bytes.fromhex(out.split()[1]) == payload[3:19]
