"""One version and one licence across Cargo.toml and python/pyproject.toml,
and the licence files they name exist (issue 16, item 5)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _field(text: str, name: str) -> str:
    m = re.search(rf'^{name}\s*=\s*(.+)$', text, re.M)
    assert m, f"no {name} field"
    return m.group(1).strip()


def test_one_version_and_licence():
    cargo = (ROOT / "Cargo.toml").read_text()
    py = (ROOT / "python" / "pyproject.toml").read_text()
    assert _field(cargo, "version") == _field(py, "version")
    lic = _field(cargo, "license").strip('"')
    assert lic == "MIT OR Apache-2.0"
    assert re.search(r'^license\s*=\s*\{\s*text\s*=\s*"MIT OR Apache-2.0"\s*\}', py, re.M)


def test_licence_files_and_changelog():
    assert "Permission is hereby granted" in (ROOT / "LICENSE-MIT").read_text()
    assert "Apache License" in (ROOT / "LICENSE-APACHE").read_text()
    assert "Version 2.0" in (ROOT / "LICENSE-APACHE").read_text()
    version = _field((ROOT / "Cargo.toml").read_text(), "version").strip('"')
    assert f"## {version}" in (ROOT / "CHANGELOG.md").read_text()
