"""`make install` into a temporary prefix: a C program built with pkg-config
alone runs (rpath from gtio.pc, no LD_LIBRARY_PATH) and reads bytes through
the installed library; the installed `gtio` tool runs; `make uninstall`
leaves no file behind (issue 16, item 3)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROGRAM = r"""
#include <gtio.h>
#include <stdio.h>
#include <string.h>
int main(int argc, char **argv) {
    GTIO_Error err;
    memset(&err, 0, sizeof err);
    if (argc != 2) return 2;
    GTIO *g = gtio_open_uri(argv[1], NULL, &err);
    if (!g) { fprintf(stderr, "open failed: %d\n", (int)err.code); return 1; }
    char buf[64];
    int64_t n = gtio_pread(g, buf, 16, 3, &err);
    if (n != 16) return 1;
    fwrite(buf, 1, 16, stdout);
    printf("|%s\n", gtio_version());
    return gtio_close(g, &err) == 0 ? 0 : 1;
}
"""


def _run(cmd, **kw):
    kw.setdefault("timeout", 600)
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


@pytest.mark.skipif(shutil.which("pkg-config") is None, reason="pkg-config missing")
def test_install_pkg_config_program_and_uninstall(tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    _run(["make", "--no-print-directory", "-C", str(ROOT), "install", f"PREFIX={prefix}"])
    for rel in ["bin/gtio", "include/gtio.h", "lib/libgtio.so", "lib/pkgconfig/gtio.pc"]:
        assert (prefix / rel).exists(), rel

    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "GTIO_LIBRARY")}
    env["PKG_CONFIG_PATH"] = str(prefix / "lib" / "pkgconfig")
    flags = _run(["pkg-config", "--cflags", "--libs", "gtio"], env=env).stdout.split()
    assert f"-Wl,-rpath,{prefix}/lib" in flags
    src = tmp_path / "prog.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "prog"
    _run(["cc", "-std=c11", str(src), "-o", str(exe), *flags], env=env)
    data = tmp_path / "data.bin"
    payload = b"0123456789abcdefghijklmnopqrstuvwxyz" * 7 + b"0123"
    data.write_bytes(payload)  # 256 bytes
    out = _run([str(exe), data.as_uri()], env=env).stdout
    assert out[:16].encode() == payload[3:19]
    version = (ROOT / "Cargo.toml").read_text().split('version = "', 1)[1].split('"', 1)[0]
    assert out.endswith(f"|{version}\n")
    # the program really uses the installed copy, not the build tree's
    ldd = _run(["ldd", str(exe)], env=env).stdout
    assert str(prefix / "lib" / "libgtio.so") in ldd

    tool = _run([str(prefix / "bin" / "gtio"), "ls", str(data)], env=env).stdout
    assert "data.bin" in tool and "256" in tool

    _run(["make", "--no-print-directory", "-C", str(ROOT), "uninstall", f"PREFIX={prefix}"])
    left = [p for p in prefix.rglob("*") if not p.is_dir()]
    assert left == [], left
