"""pysam and the htslib plugin (htslib/hfile_gtio.c).

pysam's wheel bundles its own htslib, built with ``plugins=no``
(``pysam.config.ENABLE_PLUGINS == 0``): it never looks at ``HTS_PATH``, so
``gtio+http://`` is "Protocol not supported" however the plugin is
installed. ``test_pysam_ignores_hts_path`` proves that, and fails the day a
pysam build loads plugins (then ``HTS_PATH`` is the way, as for samtools).

The bundled htslib still exports ``hfile_add_scheme_handler`` and
``hfile_init``, so the plugin can be registered by hand (htslib/README.md,
"pysam"): load pysam's libchtslib with RTLD_GLOBAL, then the plugin, and call
its ``hfile_plugin_init``. ``test_pysam_reads_regions_through_gtio`` does that
and reads several regions of a BAM made here with samtools, served by the
session's nginx as a plain object and as a member of a torrent whose web
seed is that nginx: every record must be the line ``samtools view`` prints
for the local file.

Both run pysam in a fresh process (htslib reads its plugin list once per
process, and the plugin starts its own copy of the library), in an empty
working directory (htslib keeps a copy of a remote index there).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pysam = pytest.importorskip("pysam", reason="pysam is in python/requirements-dev.txt")

REPO = Path(__file__).resolve().parents[2]
REGIONS = [("chr1", 1000, 2000), ("chr2", 50000, 60000), ("chr1", 350000, 399999)]
LEN = 400_000

# Registers the plugin with pysam's bundled htslib, then prints every record
# of each region (argv: plugin path, URL, regions as chr:beg-end).
REGISTER_AND_READ = r"""
import ctypes, sys
import pysam
plugin_path, url, regions = sys.argv[1], sys.argv[2], sys.argv[3:]
hts = ctypes.CDLL(pysam.libchtslib.__file__, mode=ctypes.RTLD_GLOBAL)
# Listing the schemes makes htslib build its scheme table first.
n = ctypes.c_int(0)
hts.hfile_list_schemes(None, None, ctypes.byref(n))
class Plugin(ctypes.Structure):
    _fields_ = [("api_version", ctypes.c_int), ("obj", ctypes.c_void_p),
                ("name", ctypes.c_char_p), ("destroy", ctypes.c_void_p)]
plugin = ctypes.CDLL(plugin_path, mode=ctypes.RTLD_GLOBAL)
me = Plugin(1, None, None, None)
assert plugin.hfile_plugin_init(ctypes.byref(me)) == 0, "hfile_plugin_init failed"
with pysam.AlignmentFile(url) as f:
    for r in regions:
        chrom, span = r.split(":")
        beg, end = (int(x) for x in span.split("-"))
        print("#", r)
        for rec in f.fetch(chrom, beg - 1, end):
            print(rec.to_string())
"""


def have_tools() -> None:
    for tool in ("samtools", "mktorrent"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (scripts/install-deps.sh installs it)")
    if not Path("/usr/include/htslib/hfile.h").exists():
        pytest.skip("libhts-dev is not installed (scripts/install-deps.sh installs it)")


def build_plugin(out: Path) -> Path:
    lib = Path(os.environ.get("GTIO_LIBRARY", REPO / "target/release/libgtio.so"))
    assert lib.exists(), f"{lib} is missing: run cargo build --release"
    so = out / "hfile_gtio.so"
    p = subprocess.run(
        [os.environ.get("CC", "cc"), "-std=c11", "-Wall", "-Wextra", "-Werror", "-O2",
         "-fPIC", "-shared", f"-I{REPO / 'include'}", str(REPO / "htslib/hfile_gtio.c"),
         "-o", str(so), f"-L{lib.parent}", f"-Wl,-rpath,{lib.parent}", "-lgtio", "-lpthread"],
        capture_output=True, text=True, timeout=120,
    )
    assert p.returncode == 0, f"plugin did not compile:\n{p.stderr}"
    return so


def write_sam(path: Path) -> None:
    rng = random.Random(14)
    lines = ["@HD\tVN:1.6", f"@SQ\tSN:chr1\tLN:{LEN}", f"@SQ\tSN:chr2\tLN:{LEN}"]
    for i in range(20_000):
        chrom = rng.choice(("chr1", "chr2"))
        pos = 1 + rng.randrange(LEN - 100)
        seq = "".join(rng.choice("ACGT") for _ in range(100))
        lines.append(f"r{i}\t0\t{chrom}\t{pos}\t60\t100M\t*\t0\t0\t{seq}\t{'I' * 100}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture(scope="module")
def bam(server, tmp_path_factory):
    """a.bam (+ .bai) under the nginx root, plain and as members of a torrent."""
    have_tools()
    work = tmp_path_factory.mktemp("pysam")
    d = server.root / "hts" / "dir"
    d.mkdir(parents=True)
    sam = work / "a.sam"
    write_sam(sam)
    subprocess.run(["samtools", "sort", "-o", str(d / "a.bam"), str(sam)], check=True,
                   capture_output=True, timeout=120)
    subprocess.run(["samtools", "index", str(d / "a.bam")], check=True, timeout=120)
    subprocess.run(["mktorrent", "-l", "16", "-w", server.url("/"), "-o",
                    str(server.root / "hts.torrent"), str(server.root / "hts")],
                   check=True, capture_output=True, timeout=120)
    plugins = work / "plugins"
    plugins.mkdir()
    return {"local": d / "a.bam", "plugin": build_plugin(plugins), "work": work}


def pysam_run(script: str, args: list, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    cwd.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-c", script, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120, env={**os.environ, **(env or {})})


def test_pysam_ignores_hts_path(server, bam):
    assert pysam.config.ENABLE_PLUGINS == 0, (
        "pysam's htslib now loads plugins: test HTS_PATH with pysam like samtools "
        "(tests/htslib.rs) and update htslib/README.md"
    )
    script = (
        "import sys, pysam\n"
        "try:\n"
        "    pysam.AlignmentFile(sys.argv[1])\n"
        "except OSError as e:\n"
        "    print('refused:', e)\n"
        "else:\n"
        "    print('opened')\n"
    )
    p = pysam_run(script, [f"gtio+{server.url('hts/dir/a.bam')}"], bam["work"] / "hts_path",
                  {"HTS_PATH": f"{bam['plugin'].parent}:"})
    assert p.returncode == 0, p.stderr
    assert "refused:" in p.stdout and "Protocol not supported" in p.stdout + p.stderr, (
        "pysam opened gtio+http:// through HTS_PATH: it loads plugins now; test that "
        f"instead.\n{p.stdout}{p.stderr}"
    )


@pytest.mark.parametrize("form", ["plain", "torrent"])
def test_pysam_reads_regions_through_gtio(server, bam, form):
    url = {
        "plain": f"gtio+{server.url('hts/dir/a.bam')}",
        "torrent": f"gtio+{server.url('hts.torrent')}#dir/a.bam",
    }[form]
    regions = [f"{c}:{b}-{e}" for c, b, e in REGIONS]
    p = pysam_run(REGISTER_AND_READ, [str(bam["plugin"]), url, *regions],
                  bam["work"] / f"read-{form}")
    assert p.returncode == 0, p.stderr
    got = p.stdout.split("# ")[1:]
    assert len(got) == len(regions), p.stdout[:2000]
    for region, text in zip(regions, got):
        local = subprocess.run(["samtools", "view", str(bam["local"]), region], check=True,
                               capture_output=True, text=True, timeout=60).stdout
        assert local, f"region {region} is empty: the test would prove nothing"
        head, _, records = text.partition("\n")
        assert head == region
        assert records == local, f"{form}: pysam's {region} differs from samtools view"
