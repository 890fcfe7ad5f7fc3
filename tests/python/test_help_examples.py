"""Every example in `gtio --help` and `gtio SUBCOMMAND --help`, and every
Python block of README.md, runs as printed on the sample dataset that
README.md's Quick start builds (issue 16, items 4 and 5): the Quick start's
commands are taken from the README itself and run, then each help example
(but `serve` and `mount`, which run until stopped) must exit 0, and each
```python block must run. The port 8080 of the texts becomes a free port,
so the test does not collide with anything on the machine.

The Python blocks import the package from the checkout; fsspec finds its
protocols through a dist-info directory made here from the entry points
python/pyproject.toml declares (what pip would install)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
GTIO = REPO / "target" / "release" / "gtio"


def _quick_start() -> list:
    text = (REPO / "README.md").read_text()
    section = text.split("## Quick start", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.strip()]


def _examples(help_text: str) -> list:
    """`gtio ...` lines (with their backslash continuations) of a help text."""
    out, cur = [], None
    for line in help_text.splitlines():
        s = line.strip()
        if cur is not None:
            cur += " " + s.rstrip("\\").strip()
            if not s.endswith("\\"):
                out.append(cur)
                cur = None
            continue
        if s.startswith("gtio ") and line.startswith("  "):
            # drop the right-hand comment column of the top-level examples
            cmd = re.split(r"\s{3,}", s)[0]
            if cmd.endswith("\\"):
                cur = cmd.rstrip("\\").strip()
            else:
                out.append(cmd)
    return out


def _python_blocks() -> list:
    return re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def _entry_points_dir(tmp: Path) -> Path:
    meta = tomllib.loads((REPO / "python" / "pyproject.toml").read_text())["project"]
    d = tmp / "eps" / f"gtio-{meta['version']}.dist-info"
    d.mkdir(parents=True)
    (d / "METADATA").write_text(f"Metadata-Version: 2.1\nName: gtio\nVersion: {meta['version']}\n")
    lines = ["[fsspec.specs]"] + [f"{k} = {v}" for k, v in meta["entry-points"]["fsspec.specs"].items()]
    (d / "entry_points.txt").write_text("\n".join(lines) + "\n")
    return d.parent


def _help(*args: str) -> str:
    return subprocess.run([str(GTIO), *args, "--help"], capture_output=True, text=True, check=True).stdout


def test_help_examples_run_on_the_readme_sample(tmp_path):
    work = tmp_path / "repo"
    work.mkdir()
    env = dict(os.environ, PATH=f"{GTIO.parent}:{os.environ['PATH']}")
    env.pop("GTIO_LIBRARY", None)
    lines = _quick_start()
    serve = [l for l in lines if " serve " in l]
    assert len(serve) == 1 and "127.0.0.1:8080" in serve[0], lines
    server = None
    port = "8080"
    try:
        for line in lines:
            if line is serve[0]:  # the README's server, on a free port
                server = subprocess.Popen(
                    [str(GTIO), "-q", "serve", "www", "--addr", "127.0.0.1:0"],
                    cwd=work, stdout=subprocess.PIPE, text=True,
                )
                port = server.stdout.readline().strip().rsplit(":", 1)[1].strip("/")
                assert port.isdigit(), port
                continue
            cmd = line.replace("target/release/gtio", str(GTIO)).replace("8080", port)
            subprocess.run(["bash", "-c", cmd], cwd=work, env=env, check=True, timeout=120)

        subs = ["ls", "cat", "get", "create"]
        examples = _examples(_help()) + [e for s in subs for e in _examples(_help(s))]
        ran = 0
        for ex in examples:
            if ex.startswith(("gtio serve", "gtio mount")):
                continue
            cmd = "set -o pipefail; " + ex.replace("8080", port)
            p = subprocess.run(["bash", "-c", cmd], cwd=work, env=env, capture_output=True, timeout=120)
            # a reader that stops early (head) gives SIGPIPE to nothing: gtio exits 0
            assert p.returncode == 0, f"{ex}: {p.returncode}\n{p.stderr.decode()}"
            ran += 1
        assert ran >= 10, examples
        assert (work / "out" / "sample" / "reads" / "numbers.txt-0:10").read_bytes() == b"1\n2\n3\n4\n5\n"

        penv = dict(env, PYTHONPATH=f"{REPO / 'python'}:{_entry_points_dir(tmp_path)}")
        blocks = _python_blocks()
        assert len(blocks) >= 2
        for block in blocks:
            code = block.replace("8080", port)
            p = subprocess.run([sys.executable, "-c", code], cwd=work, env=penv, capture_output=True,
                               text=True, timeout=120)
            assert p.returncode == 0, f"README block failed:\n{block}\n{p.stderr}"
            assert "sample/reads/numbers.txt" in p.stdout, p.stdout  # both list the zip
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
            server.stdout.close()
