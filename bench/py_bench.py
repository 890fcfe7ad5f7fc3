"""The Python side of `make bench`: one measurement per process (cold).

    py_bench.py MODE URL LOCAL [--n N] [--len L] [--offsets FILE]

MODE: gtio-seq, gtio-rand, fsspec-seq, fsspec-rand (fsspec modes take
--cache-type; "default" means fsspec's own default; --block sets gtio's
block_size with gtio.init, or fsspec's block_size). Prints one line of
key=value pairs. Sequential modes read 1 MiB at a time to the end; random
modes seek + read --len bytes at each offset of --offsets. Every byte read is
checked against LOCAL after the timed loop (seq: CRC-32 computed during the
loop, its time measured and subtracted; rand: compared afterwards).
Exit 1 on wrong bytes, 3 when the library under test cannot be imported.
"""

import argparse
import io
import os
import sys
import time
import zlib

MIB = 1 << 20


def local_crc(path):
    crc = 0
    with open(path, "rb") as f:
        while True:
            b = f.read(4 * MIB)
            if not b:
                return crc
            crc = zlib.crc32(b, crc)


def open_file(mode, url, cache_type, block):
    """A binary file object over URL for MODE, and a description."""
    if mode.startswith("gtio"):
        try:
            import gtio  # noqa: PLC0415
        except Exception as e:  # not built yet, or broken: the driver skips
            print(f"cannot import gtio: {e!r}", file=sys.stderr)
            sys.exit(3)
        desc = "default config"
        if block:
            gtio.init(block_size=block)
            desc = f"gtio.init(block_size={block})"
        ds = gtio.open(url)
        return io.BufferedReader(ds.raw()), desc
    try:
        import fsspec  # noqa: PLC0415
    except Exception as e:
        print(f"cannot import fsspec: {e!r}", file=sys.stderr)
        sys.exit(3)
    fs = fsspec.filesystem("http")
    kw = {} if cache_type == "default" else {"cache_type": cache_type}
    if block:
        kw["block_size"] = block
    f = fs.open(url, "rb", **kw)
    return f, f"{type(f.cache).__name__}, block_size {f.blocksize}"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode")
    ap.add_argument("url")
    ap.add_argument("local")
    ap.add_argument("--offsets")
    ap.add_argument("--len", type=int, default=4096)
    ap.add_argument("--cache-type", default="default")
    ap.add_argument("--block", type=int, default=0,
                    help="gtio: gtio.init(block_size=N); fsspec: open(block_size=N)")
    a = ap.parse_args()

    t_open = time.perf_counter()
    f, desc = open_file(a.mode, a.url, a.cache_type, a.block)
    t_open = time.perf_counter() - t_open
    size = os.path.getsize(a.local)

    if a.mode.endswith("-seq"):
        crc = 0
        total = 0
        crc_s = 0.0
        t0 = time.perf_counter()
        while True:
            b = f.read(MIB)
            if not b:
                break
            t = time.perf_counter()
            crc = zlib.crc32(b, crc)
            crc_s += time.perf_counter() - t
            total += len(b)
        secs = time.perf_counter() - t0 - crc_s
        ok = total == size and crc == local_crc(a.local)
        print(
            f"bytes={total} seconds={secs:.6f} mib_s={total / MIB / secs:.1f} "
            f"verify_s={crc_s:.6f} open_s={t_open:.6f} ok={int(ok)} desc={desc!r}"
        )
    else:
        with open(a.offsets) as fo:
            offs = [int(x) for x in fo.read().split()]
        got = []
        t0 = time.perf_counter()
        for off in offs:
            f.seek(off)
            got.append(f.read(a.len))
        secs = time.perf_counter() - t0
        ok = True
        with open(a.local, "rb") as lf:
            for off, b in zip(offs, got):
                lf.seek(off)
                if lf.read(a.len) != b:
                    ok = False
                    print(f"MISMATCH at offset {off}", file=sys.stderr)
                    break
        print(
            f"ops={len(offs)} seconds={secs:.6f} ops_s={len(offs) / secs:.1f} "
            f"open_s={t_open:.6f} ok={int(ok)} desc={desc!r}"
        )
    f.close()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
