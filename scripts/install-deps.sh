#!/usr/bin/env bash
# Install what gtio's build, tests and benchmarks need, only what is missing.
# Idempotent; quiet on success. Debian 12, run as root (CI runs as root).
#   - system packages: nginx-light, mktorrent, aria2, valgrind, curl, openssl,
#     python3-venv, pkg-config, samtools, bcftools, tabix, libhts-dev,
#     python3-libtorrent, man-db, and for the swarm tests (tests/swarm.rs)
#     opentracker, transmission-daemon, qbittorrent-nox
#     (apt-get update runs once, only if one is missing)
#   - .venv (at the repo root) with python/requirements-dev.txt
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQS="$ROOT/python/requirements-dev.txt"
# The system Python: python3-venv provides venv/ensurepip for it.
PYTHON="${GTIO_PYTHON:-/usr/bin/python3}"
[ -x "$PYTHON" ] || PYTHON="$(command -v python3 || true)"

die() {
    echo "install-deps: ERROR: $*" >&2
    exit 1
}

# package name -> a probe that succeeds when it is usable
missing=()
probe() { # probe PACKAGE COMMAND...
    local pkg="$1"
    shift
    "$@" >/dev/null 2>&1 || missing+=("$pkg")
}
probe nginx-light test -x /usr/sbin/nginx
probe mktorrent command -v mktorrent
probe aria2 command -v aria2c
probe valgrind command -v valgrind
probe curl command -v curl
probe openssl command -v openssl
probe pkg-config command -v pkg-config
probe fuse3 command -v fusermount3
probe python3-venv "${PYTHON:-false}" -c 'import venv, ensurepip'
probe samtools command -v samtools
probe bcftools command -v bcftools
probe tabix command -v tabix
probe libhts-dev test -f /usr/include/htslib/hfile.h
# create --tracker test and the conformance oracle (tests/torrent_conformance.rs)
probe python3-libtorrent /usr/bin/python3 -c 'import libtorrent'
probe man-db command -v man  # install test: man gtio
# swarm (issue 11): a real tracker and real seeders on loopback (tests/swarm.rs)
probe opentracker command -v opentracker
probe transmission-daemon command -v transmission-daemon
probe qbittorrent-nox command -v qbittorrent-nox

if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        die "missing: ${missing[*]}; run this script as root, or: sudo apt-get install ${missing[*]}"
    fi
    command -v apt-get >/dev/null 2>&1 || die "missing: ${missing[*]}, and apt-get is not available"
    log="$(mktemp -t gtio-apt.XXXXXX.log)"
    echo "install-deps: installing ${missing[*]} (log: $log)"
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-q -y -o DPkg::Lock::Timeout=600 -o Dpkg::Use-Pty=0)
    if ! apt-get "${apt_opts[@]}" update >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get update failed (full log: $log)"
    fi
    if ! apt-get "${apt_opts[@]}" install --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "apt-get install ${missing[*]} failed (full log: $log)"
    fi
    rm -f "$log"
    # the package may have started a system nginx on port 80: tests run their own
    if [[ " ${missing[*]} " == *" nginx-light "* ]] && command -v systemctl >/dev/null 2>&1; then
        systemctl disable --now nginx >/dev/null 2>&1 || true
    fi
fi

# re-check: a package that installed but does not work is an error now
missing=()
probe nginx-light test -x /usr/sbin/nginx
probe mktorrent command -v mktorrent
probe aria2 command -v aria2c
probe valgrind command -v valgrind
probe curl command -v curl
probe openssl command -v openssl
probe pkg-config command -v pkg-config
probe python3-venv "${PYTHON:-false}" -c 'import venv, ensurepip'
probe samtools command -v samtools
probe bcftools command -v bcftools
probe tabix command -v tabix
probe libhts-dev test -f /usr/include/htslib/hfile.h
# create --tracker test and the conformance oracle (tests/torrent_conformance.rs)
probe python3-libtorrent /usr/bin/python3 -c 'import libtorrent'
probe man-db command -v man  # install test: man gtio
# swarm (issue 11): a real tracker and real seeders on loopback (tests/swarm.rs)
probe opentracker command -v opentracker
probe transmission-daemon command -v transmission-daemon
probe qbittorrent-nox command -v qbittorrent-nox
[ "${#missing[@]}" -eq 0 ] || die "still missing after apt-get install: ${missing[*]}"

# Python venv with the dev requirements; reinstalled only when requirements change
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create the venv at $VENV with $PYTHON"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
    log="$(mktemp -t gtio-pip.XXXXXX.log)"
    if ! "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" >"$log" 2>&1; then
        tail -n 30 "$log" >&2
        die "pip install -r $REQS failed (full log: $log)"
    fi
    rm -f "$log"
    echo "$want" >"$stamp"
fi
