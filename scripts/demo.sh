#!/usr/bin/env bash
# `make demo`: a short tour of gtio, using only what `make examples` builds.
#
# Makes a small nested dataset in a temporary directory, serves it with
# `gtio serve` on a free loopback port, makes a torrent of it with
# `gtio create` (web seed: that server), then reads it through the C examples
# and the command-line tool and checks every byte with cmp. The server and
# the temporary directory are removed however the script ends.
#
# Environment: GTIO (the gtio binary), EXDIR (the built C examples).
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GTIO="${GTIO:-$ROOT/target/release/gtio}"
EXDIR="${EXDIR:-$ROOT/target/examples}"

say() { printf 'demo: %s\n' "$*"; }
die() {
    printf 'demo: FAILED: %s\n' "$*" >&2
    exit 1
}
indent() { sed 's/^/    /'; }
# slice FILE START LEN: those bytes of FILE on stdout (no pipefail here: tail
# gets SIGPIPE when head has enough).
slice() { (set +o pipefail; tail -c +"$(($2 + 1))" "$1" | head -c "$3"); }

[ -x "$GTIO" ] || die "$GTIO is missing (run make build)"
[ -x "$EXDIR/sync_read" ] || die "$EXDIR/sync_read is missing (run make examples)"

tmp="$(mktemp -d -t gtio-demo.XXXXXX)"
server_pid=""
cleanup() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
trap 'printf "demo: FAILED at line %s of scripts/demo.sh (see the message above)\n" "$LINENO" >&2' ERR

# 1. A deterministic sample dataset: four files, nested, about 5 MiB.
www="$tmp/www"
ds="$www/sample"
mkdir -p "$ds/reads" "$ds/index"
printf 'A sample dataset for the gtio demo.\n' >"$ds/README"
seq -f 'read %08.0f ACGTTGCAACGTTGCAACGT' 1 100000 >"$ds/reads/a.txt"
seq -f 'line %07.0f of b.txt' 1 80000 >"$ds/reads/b.txt"
seq 1 100000 >"$ds/index/numbers.idx"
# The torrent's byte stream: its files end to end, in path order.
stream="$tmp/stream.bin"
(cd "$ds" && find . -type f | sed 's|^\./||' | sort | while IFS= read -r f; do cat "$f"; done) >"$stream"
size=$(wc -c <"$stream")
say "made a sample dataset: $(find "$ds" -type f | wc -l) files, $size bytes, under $ds"

# 2. An HTTP origin on a free loopback port.
"$GTIO" serve "$www" --addr 127.0.0.1:0 >"$tmp/serve.out" 2>"$tmp/serve.err" &
server_pid=$!
url=""
for _ in $(seq 100); do
    url="$(head -n1 "$tmp/serve.out" 2>/dev/null || true)"
    [ -n "$url" ] && break
    kill -0 "$server_pid" 2>/dev/null || die "gtio serve exited: $(cat "$tmp/serve.err")"
    sleep 0.1
done
[ -n "$url" ] || die "gtio serve printed no URL within 10 s"
say "gtio serve $www  ->  $url"

# 3. A torrent with that server as its web seed (64 KiB pieces).
"$GTIO" create "$ds" --web-seed "$url" -l 16 -o "$www/sample.torrent" | indent
torrent_url="${url}sample.torrent"

# 4. The C examples, over HTTP: the torrent and a plain object.
"$EXDIR/sync_read" "$torrent_url" "$stream" | indent
"$EXDIR/sync_read" "${url}sample/reads/a.txt" "$ds/reads/a.txt" | indent
if [ -x "$EXDIR/torrent_ls" ]; then
    "$EXDIR/torrent_ls" "$torrent_url" reads/b.txt 21 42 >"$tmp/tls.out" 2>"$tmp/tls.err" ||
        die "torrent_ls: $(cat "$tmp/tls.err")"
    slice "$ds/reads/b.txt" 21 42 | cmp -s - "$tmp/tls.out" ||
        die "torrent_ls printed the wrong bytes of reads/b.txt"
    say "torrent_ls $torrent_url reads/b.txt 21 42: listed $(grep -c . "$tmp/tls.err") lines, bytes match"
fi

# 5. The command-line tool: ls, then get with overlapping ranges.
say "gtio ls $torrent_url"
"$GTIO" ls "$torrent_url" | indent
out="$tmp/out"
say "gtio get -d $torrent_url --range sample:1000:3000000 --range sample:2000000:2000000 --file-range sample:reads/b.txt:100:50000 -o $out"
"$GTIO" get -q -d "$torrent_url" \
    --range sample:1000:3000000 \
    --range sample:2000000:2000000 \
    --file-range sample:reads/b.txt:100:50000 \
    -o "$out"
check() { # check OUTPUT SOURCE START LEN
    slice "$2" "$3" "$4" | cmp -s - "$1" || die "$1 differs from bytes $3..$(($3 + $4)) of $2"
    say "  ${1#"$out"/}: $(wc -c <"$1") bytes, identical to the source"
}
check "$out/sample/range-1000:3000000" "$stream" 1000 3000000
check "$out/sample/range-2000000:2000000" "$stream" 2000000 2000000
check "$out/sample/reads/b.txt-100:50000" "$ds/reads/b.txt" 100 50000

say "all bytes read through gtio matched; stopping the server and removing $tmp"
