#!/bin/sh
# tests/interop/run.sh -- `make interop`: detad against REAL peers.
#
#   clients    Python smtplib (plain and a pipelined group), swaks (with and
#              without --pipeline), curl's SMTP client -> Maildir, dot lines intact
#   rdlv       RDLV maxtimer=1 with 120/CONT to the final 250; DETA -> 221 and
#              close, delivered later; hang-up after a 120 aborts
#   smarthost  Postfix's smtp-sink as the upstream: byte-exact content, DSN
#              parameters passed on, -N -> relayed DSN, -r soft / -f hard
#              rejects, -w slow upstream under RDLV, no upstream + `detad flush`
#   dsn        DSNs from failing/tempfailing pipes and NOTIFY=SUCCESS, then every
#              DSN produced by any suite parsed with Python's email package
#   board      tests/board/busybox_init.sh, when that file exists
#
# Every server listens on 127.0.0.1 on a free port; every step is bounded by
# `timeout`; everything stops by itself. Output: PASS/FAIL lines, then a
# final line "N passed, N failed". Exit 0 only when nothing failed.
#
# Environment:
#   DETAD_TEST_BIN=<binary>  test this binary (default target/release/detad,
#                            built with cargo build --release if missing)
#   INTEROP_SUITES="clients rdlv smarthost dsn board"  run only these
#   NO_INSTALL=1             never call install-deps.sh for missing peers
#   KEEP=1                   keep the scratch directory (always kept on failure)
set -u

cd "$(dirname "$0")/../.." || exit 1
ROOT=$(pwd)
HERE=$ROOT/tests/interop
PY=${PYTHON3:-python3}
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the work tree
SUITES=${INTEROP_SUITES:-clients rdlv smarthost dsn board}

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS [interop] $*"; }
fail() { failed=$((failed + 1)); echo "FAIL [interop] $*"; }

finish() {
    echo
    if [ "$failed" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "logs, configs, Maildirs and sink dumps kept in $WORK"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit $?
}

# --- the binary -------------------------------------------------------------
if [ -n "${DETAD_TEST_BIN:-}" ]; then
    BIN=$DETAD_TEST_BIN
else
    BIN=${CARGO_TARGET_DIR:-target}/release/detad
    if [ ! -x "$BIN" ]; then
        echo "[interop] $BIN missing: cargo build --release"
        timeout 900 cargo build --release -q || { echo "[interop] cargo build --release failed"; }
    fi
fi
case $BIN in /*) ;; *) BIN=$ROOT/$BIN ;; esac

WORK=$(mktemp -d /tmp/detad-interop.XXXXXX) || exit 1
# Reachable by the users detad runs programs as (nobody when it runs as root).
chmod 755 "$WORK"
trap 'echo "[interop] interrupted"; fail "run interrupted"; finish' INT TERM HUP

if [ ! -x "$BIN" ]; then
    fail "detad binary: $BIN is not an executable"
    finish
fi
echo "[interop] binary $BIN ($("$BIN" -V 2>/dev/null)), scratch $WORK"

# --- the peers ----------------------------------------------------------------
missing() {
    m=""
    command -v swaks >/dev/null 2>&1 || m="$m swaks"
    command -v curl >/dev/null 2>&1 || m="$m curl"
    command -v busybox >/dev/null 2>&1 || m="$m busybox"
    [ -x "${SMTP_SINK:-/usr/sbin/smtp-sink}" ] || m="$m smtp-sink"
    command -v "$PY" >/dev/null 2>&1 || m="$m python3"
    echo "$m"
}
m=$(missing)
if [ -n "$m" ] && [ "${NO_INSTALL:-0}" != 1 ]; then
    echo "[interop] missing peers:$m; running tests/interop/install-deps.sh"
    timeout 1200 sh "$HERE/install-deps.sh" || echo "[interop] install-deps.sh failed"
    m=$(missing)
fi
if [ -n "$m" ]; then
    fail "peers present: missing$m (run tests/interop/install-deps.sh as root)"
    finish
fi
pass "peers present: swaks $(swaks --version 2>/dev/null | head -n1 | sed 's/.*version //'), $(curl --version | head -n1 | cut -d' ' -f1-2), smtp-sink, busybox, $($PY --version 2>&1)"

# --- the Python suites ---------------------------------------------------------
# run_py SUITE SECONDS: runs test_SUITE.py bounded, echoes its lines and adds
# its RESULT counts; a suite that dies without RESULT counts as one failure.
run_py() {
    suite=$1 limit=$2
    out=$WORK/$suite.out
    echo
    echo "=== $suite ==="
    timeout -k 10 "$limit" "$PY" "$HERE/test_$suite.py" --bin "$BIN" --work "$WORK/$suite" \
        --dsn-root "$WORK/dsn-maildirs" >"$out" 2>&1
    rc=$?
    grep -v '^RESULT ' "$out"
    res=$(grep '^RESULT ' "$out" | tail -n 1)
    if [ -z "$res" ]; then
        if [ $rc = 124 ] || [ $rc = 137 ]; then
            fail "$suite: suite did not finish within ${limit}s (killed)"
        else
            fail "$suite: suite crashed (exit $rc) before its result line"
        fi
        return
    fi
    p=$(echo "$res" | sed -n 's/.* passed=\([0-9]*\) .*/\1/p')
    f=$(echo "$res" | sed -n 's/.* failed=\([0-9]*\).*/\1/p')
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    if [ "${f:-0}" = 0 ] && [ $rc != 0 ]; then
        fail "$suite: exit $rc with no failed check"
    fi
}

for s in $SUITES; do
    case $s in
    clients) run_py clients 90 ;;
    rdlv) run_py rdlv 90 ;;
    smarthost) run_py smarthost 150 ;;
    dsn) ;;  # last: it checks the DSNs the other suites produced
    board) ;;
    *) fail "unknown suite '$s' in INTEROP_SUITES" ;;
    esac
done
case " $SUITES " in *" dsn "*) run_py dsn 120 ;; esac

# --- the busybox board test (owned elsewhere) -----------------------------------
case " $SUITES " in
*" board "*)
    if [ -f tests/board/busybox_init.sh ]; then
        echo
        echo "=== board (tests/board/busybox_init.sh) ==="
        DETAD_TEST_BIN=$BIN timeout -k 10 300 sh tests/board/busybox_init.sh >"$WORK/board.out" 2>&1
        rc=$?
        sed 's/^/    | /' "$WORK/board.out" | tail -n 40
        if [ $rc = 0 ]; then
            pass "board: tests/board/busybox_init.sh exit 0"
        else
            fail "board: tests/board/busybox_init.sh exit $rc (log above, full in $WORK/board.out)"
        fi
    else
        echo "[interop] tests/board/busybox_init.sh not present: board test skipped"
    fi
    ;;
esac

# --- nothing left behind ----------------------------------------------------------
left=""
for d in /proc/[0-9]*; do
    exe=$(readlink "$d/exe" 2>/dev/null) || continue
    case "$exe" in
    "$BIN" | */smtp-sink) grep -q "$WORK" "$d/cmdline" 2>/dev/null && left="$left ${d#/proc/}" ;;
    esac
done
if [ -z "$left" ]; then
    pass "no detad or smtp-sink of this run left running"
else
    fail "processes left running:$left"
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
fi

finish
