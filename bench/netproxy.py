#!/usr/bin/env python3
"""A network-like origin for `make bench`: a TCP proxy in front of nginx that
adds a first-byte delay to every request and caps each connection's
bandwidth, the way an object store or a CDN across a WAN behaves.

    netproxy.py --upstream HOST:PORT [--delay-ms 20] [--rate 25M] [--port 0]

Prints `port=N` on stdout once it listens, then serves until killed (or its
parent dies). Standard library only; one thread per direction per
connection. Answers move socket -> pipe -> socket with splice(2), so their
bytes never enter Python: relaying through recv/sendall, the GIL capped all
connections together near 182 MiB/s, below 8 connections' worth of the
default rate, so aria2c -x8 and gtio's 16 connections met the proxy's
ceiling instead of the network's.

Model: HTTP/1.1 clients send one request and wait for its answer (none of
the tools pipelines), so holding each request head for the delay before
passing it on delays that request's first byte by exactly that much, on a
fresh connection and on a kept-alive one alike. Answers flow back through a
per-connection pacer: each chunk is sent no earlier than the connection's
byte count allows at the rate (a token bucket with no burst beyond one
chunk), so N connections get N times the bandwidth — what makes parallel
ranges pay off on a real network.
"""

import argparse
import ctypes
import fcntl
import os
import signal
import socket
import sys
import threading
import time

CHUNK = 64 << 10


def parse_rate(s):
    s = s.strip().upper()
    mult = {"K": 1e3, "M": 1e6, "G": 1e9}.get(s[-1:], 1)
    return float(s[:-1] if s[-1:] in "KMG" else s) * mult


def die_with_parent():
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def close(*socks):
    for s in socks:
        try:
            s.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        s.close()


def requests_upstream(client, up, delay):
    """Pass request heads on, each after `delay` seconds."""
    buf = b""
    try:
        while True:
            data = client.recv(CHUNK)
            if not data:
                break
            buf += data
            # GET and HEAD have no body: a request ends at its blank line.
            while b"\r\n\r\n" in buf:
                head, buf = buf.split(b"\r\n\r\n", 1)
                time.sleep(delay)
                up.sendall(head + b"\r\n\r\n")
    except OSError:
        pass
    close(client, up)


F_SETPIPE_SZ = 1031


def answers_downstream(up, client, rate):
    """Relay answers at no more than `rate` bytes/s on this connection."""
    next_at = 0.0
    r, w = os.pipe()
    try:
        fcntl.fcntl(w, F_SETPIPE_SZ, CHUNK)
    except OSError:
        pass
    try:
        while True:
            # Up to one chunk into the pipe (blocks until the origin sends).
            n = os.splice(up.fileno(), w, CHUNK)
            if not n:
                break
            now = time.monotonic()
            next_at = max(next_at, now)
            if next_at > now:
                time.sleep(next_at - now)
            left = n
            while left:
                left -= os.splice(r, client.fileno(), left)
            next_at += n / rate
    except OSError:
        pass
    os.close(r)
    os.close(w)
    close(client, up)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--delay-ms", type=float, default=20.0)
    ap.add_argument("--rate", default="25M", help="bytes/s per connection (K/M/G suffix)")
    ap.add_argument("--port", type=int, default=0)
    a = ap.parse_args()
    die_with_parent()
    host, port = a.upstream.rsplit(":", 1)
    delay, rate = a.delay_ms / 1000.0, parse_rate(a.rate)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", a.port))
    ls.listen(256)
    print(f"port={ls.getsockname()[1]}", flush=True)
    while True:
        client, _ = ls.accept()
        try:
            up = socket.create_connection((host, int(port)), timeout=10)
            up.settimeout(None)
        except OSError:
            client.close()
            continue
        for s in (client, up):
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=requests_upstream, args=(client, up, delay), daemon=True).start()
        threading.Thread(target=answers_downstream, args=(up, client, rate), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
