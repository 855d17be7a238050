#!/bin/sh
# tests/check/sans_io.sh [ROOT] -- the protocol core stays sans-IO: no
# sockets, files, threads, processes or clocks in the files below (paths
# relative to ROOT, default the repository). Every listed file must exist
# (a moved file must not silently escape the check), and a grep error is a
# failure, not a pass.
#   --plant   proves the check can fail: a copy of the core with a planted
#             `use std::fs;` must be refused.
set -u
ROOT=${1:-.}

core_files() {
    find "$ROOT/src/smtp" -name '*.rs'
    find "$ROOT/src/queue/dsn" -name '*.rs'
    for f in src/queue/codec.rs src/queue/bounce.rs src/queue/schedule.rs \
             src/queue/crc32.rs src/queue/delivery.rs src/time_fmt.rs; do
        echo "$ROOT/$f"
    done
    [ -d "$ROOT/src/auth" ] && find "$ROOT/src/auth" -name '*.rs'
    for f in src/burl/url src/burl/imap src/burl/fetch.rs; do
        [ -e "$ROOT/$f" ] && find "$ROOT/$f" -name '*.rs'
    done
    return 0
}

# I/O, threads and clocks, by path or by the usual entry points.
PATTERN='std::(net|fs|thread|process|os)|::now\(|\b(TcpStream|UdpSocket|File|Instant|SystemTime)\b|\b(mio|rustix|crossbeam_channel|signal_hook)::'

check() {
    files=$(core_files) || return 2
    [ -n "$files" ] || { echo "sans-io: no core files found under $ROOT" >&2; return 2; }
    for f in $files; do
        [ -f "$f" ] || { echo "sans-io: $f is listed but missing" >&2; return 2; }
    done
    # shellcheck disable=SC2086
    grep -nE "$PATTERN" $files
    rc=$?
    case $rc in
    0) echo "sans-io: the protocol core must not touch sockets, files, threads or clocks (see the lines above)" >&2; return 1 ;;
    1) return 0 ;;
    *) echo "sans-io: grep failed ($rc)" >&2; return 2 ;;
    esac
}

if [ "$ROOT" = "--plant" ]; then
    tmp=$(mktemp -d) || exit 2
    trap 'rm -rf "$tmp"' EXIT
    cp -r src "$tmp/src"
    printf '\nuse std::fs;\n' >> "$tmp/src/smtp/session/processing.rs"
    if ROOT=$tmp check >/dev/null 2>&1; then
        echo "sans-io: a planted violation was NOT caught" >&2
        exit 1
    fi
    echo "sans-io: a planted violation is caught"
    exit 0
fi
check
