#!/bin/sh
# Print the size of detad builds and check their limits (`make size`).
#
#   size.sh LABEL FILE LIMIT HINT [LABEL FILE LIMIT HINT]...
#
# One line per build: bytes, KiB, gzip -9 bytes and KiB, the limit check,
# the file (static or dynamic, when `file` is installed).
# LIMIT is "<N" (must stay below N bytes), "<=N" (at most N bytes) or "-"
# (none). A FILE that does not exist is reported as not built, with HINT (the
# command that builds it); that is not a failure. Exit 1 when a build is over
# its limit or no FILE exists at all, 0 otherwise.
set -eu

[ $# -ge 4 ] && [ $(($# % 4)) = 0 ] || {
    echo "usage: size.sh LABEL FILE LIMIT HINT [LABEL FILE LIMIT HINT]..." >&2
    exit 2
}

kib() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1024 }'; }

found=0
over=0
row() { printf '%-24s %8s %7s  %8s %7s  %-16s %s\n' "$@"; }
row build bytes KiB "gzip -9" KiB limit binary
while [ $# -ge 4 ]; do
    label=$1 file=$2 limit=$3 hint=$4
    shift 4
    if [ ! -f "$file" ]; then
        row "$label" - - - - - "not built ($hint)"
        continue
    fi
    found=1
    bytes=$(wc -c <"$file" | tr -d ' ')
    gz=$(gzip -9c "$file" | wc -c | tr -d ' ')
    verdict=-
    case $limit in
    "<="*)
        max=${limit#<=}
        if [ "$bytes" -le "$max" ]; then verdict="ok <= $max"; else verdict="FAIL > $max"; over=1; fi ;;
    "<"*)
        max=${limit#<}
        if [ "$bytes" -lt "$max" ]; then verdict="ok < $max"; else verdict="FAIL >= $max"; over=1; fi ;;
    -) ;;
    *) echo "size.sh: bad limit '$limit' for $label" >&2; exit 2 ;;
    esac
    link=""
    if command -v file >/dev/null 2>&1; then
        case $(file -b "$file") in
        *"statically linked"*) link=" (static)" ;;
        *"dynamically linked"*) link=" (dynamic)" ;;
        esac
    fi
    row "$label" "$bytes" "$(kib "$bytes")" "$gz" "$(kib "$gz")" "$verdict" "$file$link"
    case $verdict in FAIL*)
        echo "FAIL: $label: $file is $bytes bytes, limit $limit" >&2 ;;
    esac
done

if [ $found = 0 ]; then
    echo "size.sh: no detad binary built; see the hints above" >&2
    exit 1
fi
exit $over
