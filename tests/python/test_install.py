"""`make install` into a temporary prefix: a C program built with pkg-config
alone runs (rpath from gtio.pc, no LD_LIBRARY_PATH) and reads bytes through
the installed library; the installed `gtio` tool runs; `man gtio` and
`man gtio-SUBCOMMAND` show the generated pages, and the bash completion
completes subcommands and options (zsh and fish files are checked for their
headers); `make uninstall` leaves no file behind (issue 16, item 3)."""

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

    _check_man_and_completions(prefix, env)

    _run(["make", "--no-print-directory", "-C", str(ROOT), "uninstall", f"PREFIX={prefix}"])
    left = [p for p in prefix.rglob("*") if not p.is_dir()]
    assert left == [], left


def _subcommands(gtio: Path, env) -> list:
    """The visible subcommands, from `gtio --help`'s Commands section."""
    text = _run([str(gtio), "--help"], env=env).stdout
    section = text.split("Commands:", 1)[1].split("\n\n", 1)[0]
    names = [line.split()[0] for line in section.splitlines() if line.strip()]
    return [n for n in names if n != "help"]


def _check_man_and_completions(prefix: Path, env) -> None:
    gtio = prefix / "bin" / "gtio"
    subs = _subcommands(gtio, env)
    assert {"ls", "cat", "get", "create", "serve"} <= set(subs), subs
    assert "generate" not in subs  # hidden: the build step, not a user command
    man1 = prefix / "share" / "man" / "man1"
    pages = sorted(p.name for p in man1.iterdir())
    assert pages == sorted(["gtio.1"] + [f"gtio-{s}.1" for s in subs]), pages

    if shutil.which("man"):
        menv = dict(env, MANPATH=str(prefix / "share" / "man"), MANWIDTH="100", MAN_DISABLE_SECCOMP="1")
        page = _run(["man", "-P", "cat", "gtio"], env=menv).stdout
        assert "SYNOPSIS" in page and "gtio-ls(1)" in page and "gtio-create(1)" in page
        create = _run(["man", "-P", "cat", "gtio-create"], env=menv).stdout
        assert "--tracker" in create and "--web-seed" in create
        serve = _run(["man", "-P", "cat", "gtio-serve"], env=menv).stdout
        assert "--addr" in serve and "--cred" not in serve and "--ca-bundle" not in serve
    else:
        pytest.fail("man is missing (scripts/install-deps.sh installs man-db)")

    share = prefix / "share"
    bash_file = share / "bash-completion" / "completions" / "gtio"
    script = (
        f"source {bash_file} && complete -p gtio && "
        "COMP_WORDS=(gtio cr); COMP_CWORD=1; _gtio gtio cr gtio; echo \"words: ${COMPREPLY[*]}\"; "
        "COMP_WORDS=(gtio create --tr); COMP_CWORD=2; _gtio gtio --tr create; echo \"opts: ${COMPREPLY[*]}\""
    )
    out = _run(["bash", "--norc", "-c", script], env=env).stdout
    assert "-F _gtio gtio" in out
    assert "words: create\n" in out and "opts: --tracker\n" in out, out
    zsh = (share / "zsh" / "site-functions" / "_gtio").read_text()
    assert zsh.startswith("#compdef gtio") and "--tracker" in zsh and "generate" not in zsh
    fish = (share / "fish" / "vendor_completions.d" / "gtio.fish").read_text()
    assert "complete -c gtio" in fish and "tracker" in fish and "generate" not in fish
