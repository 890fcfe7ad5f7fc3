"""Build hook for setuptools-rust: compiles libgtio (the crate at the
repository root) and puts it inside the package as ``gtio/_libgtio.abi3.so``.

Everything else about the package is declared in ``pyproject.toml``. The
library is a plain C ABI loaded with ctypes (``Binding.NoBinding``), not a
CPython extension, so one wheel serves every Python 3 (tagged abi3, see
``setup.cfg``). Set ``CARGO_TARGET_DIR`` to reuse an existing build
directory (``make wheel`` and the tests point it at ``../target``).
"""

import os

from setuptools import setup
from setuptools_rust import Binding, RustExtension, Strip

HERE = os.path.dirname(os.path.abspath(__file__))
MANIFEST = os.path.join(HERE, os.pardir, "Cargo.toml")

if not os.path.exists(MANIFEST):
    raise SystemExit(
        "gtio: the Python package is built from a gtio checkout "
        f"(looked for {os.path.normpath(MANIFEST)}); run `pip install ./python` "
        "from the repository root, or install a wheel made by `make wheel`"
    )

setup(
    rust_extensions=[
        RustExtension(
            "gtio._libgtio",
            path=MANIFEST,
            binding=Binding.NoBinding,
            # The crate types of Cargo.toml, not setuptools-rust's default
            # of cdylib alone: the same cargo unit as `cargo build --release`,
            # so a build tree that is up to date is reused as is instead of
            # relinking the crate (and relinking it again at the next make).
            args=["--crate-type", "cdylib", "--crate-type", "staticlib", "--crate-type", "rlib"],
            # Cargo's release profile keeps line tables for backtraces
            # (debug = 1); the wheel does not need them: 3x smaller.
            strip=Strip.Debug,
        )
    ],
    zip_safe=False,
)
