"""``python -m gtio``: the ``ls`` and ``cat`` of the ``gtio`` tool, through
this package, plus ``info`` about the package itself.

It exists so that a ``pip install`` alone (no ``make install``, no Rust tool
on PATH) can list and read a dataset, and show which library the package
loaded::

    python -m gtio info                         # version, library path, defaults
    python -m gtio ls URI-OR-PATH [--json]      # files, stream offsets, sizes
    python -m gtio cat URI-OR-PATH [--file NAME] [--offset N] [--length N]

The arguments mean what they mean to ``gtio ls``/``gtio cat``; ``--cred``
(or ``$GTIO_CRED``) sends a credential. Everything else the ``gtio`` tool does
(``get``, ``create``, ``serve``, ``mount``) is left to it. Exit status: 0 on
success, 1 when an operation fails, 2 for a bad command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import List, Optional

CHUNK = 1 << 20


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gtio",
        description="List and read datasets (HTTP(S) objects, torrents) through the gtio package.",
        epilog="Examples:\n"
        "  python -m gtio ls http://127.0.0.1:8080/sample.torrent\n"
        "  python -m gtio cat www/sample.torrent --file lines.txt --offset 7 --length 20\n"
        "  python -m gtio info",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("info", help="the package's version, library and default settings")
    for name, text in (("ls", "list a dataset's files"), ("cat", "write a dataset's bytes to stdout")):
        s = sub.add_parser(name, help=text)
        s.add_argument("input", metavar="TORRENT-OR-URI", help="a .torrent file, a local file or a URI")
        s.add_argument(
            "--cred",
            metavar="TOKEN",
            default=os.environ.get("GTIO_CRED") or None,
            help="credential sent as Authorization to the dataset's host [env: GTIO_CRED]",
        )
        if name == "ls":
            s.add_argument("--json", action="store_true", help='one JSON object: {"name", "size", "files"}')
        else:
            s.add_argument("--file", metavar="NAME", help="only this file of the dataset")
            s.add_argument("--offset", metavar="N", type=int, default=0, help="start here (bytes)")
            s.add_argument("--length", metavar="N", type=int, help="at most this many bytes")
    return p


def _info() -> int:
    import gtio

    print(f"gtio {gtio.__version__} (library {gtio.version()})")
    print(f"library: {gtio.library_path}")
    print(f"package: {os.path.dirname(gtio.__file__)}")
    for key, value in gtio.default_config().items():
        print(f"  {key} = {value}")
    print("settings: environment variables GTIO_* (README.md, 'Environment'); GTIO_LIBRARY overrides the library")
    return 0


def _ls(args: argparse.Namespace) -> int:
    import gtio

    with gtio.open(args.input, cred=args.cred) as ds:
        files = ds.files()
        if args.json:
            doc = {
                "name": ds.name,
                "size": ds.size,
                "files": [{"name": f.name, "offset": f.offset, "size": f.size} for f in files],
            }
            print(json.dumps(doc))
        else:
            # the layout of `gtio ls`: a summary, then OFFSET SIZE NAME columns
            plural = "" if len(files) == 1 else "s"
            print(f"{ds.name}: {len(files)} file{plural}, {ds.size} bytes")
            w_off = max([6] + [len(str(f.offset)) for f in files])
            w_size = max([4] + [len(str(f.size)) for f in files])
            print(f"{'OFFSET':>{w_off}}  {'SIZE':>{w_size}}  NAME")
            for f in files:
                print(f"{f.offset:>{w_off}}  {f.size:>{w_size}}  {f.name}")
    return 0


def _cat(args: argparse.Namespace) -> int:
    import gtio

    if args.offset < 0 or (args.length is not None and args.length < 0):
        print("python -m gtio: --offset and --length must not be negative", file=sys.stderr)
        return 2
    with gtio.open(args.input, cred=args.cred) as ds:
        start, end = 0, ds.size
        if args.file is not None:
            fi = ds.file_info(args.file)
            start, end = fi.offset, fi.offset + fi.size
        pos = min(start + args.offset, end)
        if args.length is not None:
            end = min(end, pos + args.length)
        out = sys.stdout.buffer
        try:
            while pos < end:
                chunk = ds.pread(min(CHUNK, end - pos), pos)
                if not chunk:
                    break
                out.write(chunk)
                pos += len(chunk)
            out.flush()
        except BrokenPipeError:
            # the reader went away (`| head`): a quiet success, as for gtio cat
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        if args.command == "info":
            return _info()
        if args.command == "ls":
            return _ls(args)
        return _cat(args)
    except ImportError as e:
        print(f"python -m gtio: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"python -m gtio: {e.strerror or e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
