#!/bin/sh
# tests/check/layers.sh [ROOT] -- no module imports from a layer above it.
# Layers, bottom up (a module may use its own layer and those below):
#   0  smtp config time_fmt auth clock   the protocol core, settings, helpers
#   1  queue                       spool, codec, schedule, limits, DSNs, manager
#   2  delivery burl tls           workers and transports, outbound clients
#   3  server                      the network side
#   4  cli                         the commands beside the daemon
# A grep error is a failure. --plant proves the check can fail.
set -u
ROOT=${1:-.}

layer_of() {
    case $1 in
    smtp | config | time_fmt | auth | clock) echo 0 ;;
    queue) echo 1 ;;
    delivery | burl | tls) echo 2 ;;
    server) echo 3 ;;
    cli) echo 4 ;;
    *) echo "" ;;
    esac
}

check() {
    bad=0
    for path in "$ROOT"/src/*; do
        name=$(basename "$path" .rs)
        [ "$name" = lib ] || [ "$name" = main ] && continue
        mine=$(layer_of "$name")
        if [ -z "$mine" ]; then
            echo "layers: src/$name has no layer (add it to tests/check/layers.sh)" >&2
            bad=1
            continue
        fi
        uses=$(grep -rhoE 'crate::[a-z_]+' "$path")
        rc=$?
        [ $rc -le 1 ] || { echo "layers: grep failed ($rc) on $path" >&2; return 2; }
        for used in $(printf '%s\n' "$uses" | sed 's/crate:://' | sort -u); do
            theirs=$(layer_of "$used")
            [ -n "$theirs" ] || continue
            if [ "$theirs" -gt "$mine" ]; then
                echo "layers: src/$name (layer $mine) uses crate::$used (layer $theirs):" >&2
                grep -rn "crate::$used" "$path" >&2
                bad=1
            fi
        done
    done
    return $bad
}

if [ "$ROOT" = "--plant" ]; then
    tmp=$(mktemp -d) || exit 2
    trap 'rm -rf "$tmp"' EXIT
    cp -r src "$tmp/src"
    printf '\n#[allow(unused_imports)]\nuse crate::server::shared::Shared;\n' >> "$tmp/src/queue/bounce.rs"
    if ROOT=$tmp check >/dev/null 2>&1; then
        echo "layers: a planted upward import was NOT caught" >&2
        exit 1
    fi
    echo "layers: a planted upward import is caught"
    exit 0
fi
check
