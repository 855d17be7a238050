#!/bin/sh
# tests/board/busybox_init.sh -- the board files under busybox (make test-board).
#
# Installs detad with `make install DESTDIR=$tmp/root`, points the installed
# config at 127.0.0.1:<free port> and at a spool/Maildir inside $tmp, then runs
# the installed /etc/init.d/S50detad with busybox sh, with a directory of
# busybox applet links first in PATH (start-stop-daemon, logger, setsid, ...):
#   start, status, send a message (python3 smtplib), check the Maildir,
#   reload, flush, start again (no second instance), stop, status,
#   and a start with a broken config. Afterwards: no pidfile, no process,
#   spool queue/ tmp/ corrupt/ empty.
# Every step is bounded in time; everything listens on 127.0.0.1 only.
#
# Environment: DETAD_TEST_BIN=<binary> to test a given binary (default: cargo
# build --release and use target/release/detad); KEEP=1 keeps $tmp;
# DETAD_NAME=<comm> if the binary's process name is not "detad".
set -u

cd "$(dirname "$0")/../.." || exit 1

say() { echo "[board] $*"; }

sh board/scripts/ensure.sh cmd busybox busybox || exit 1
BB=$(command -v busybox)
command -v python3 >/dev/null 2>&1 || { echo "[board] python3 is needed" >&2; exit 1; }
command -v timeout >/dev/null 2>&1 || { echo "[board] timeout (coreutils) is needed" >&2; exit 1; }

if [ -n "${DETAD_TEST_BIN:-}" ]; then
    bin=$DETAD_TEST_BIN
else
    say "cargo build --release"
    timeout 900 cargo build --release -q || { echo "[board] cargo build --release failed" >&2; exit 1; }
    bin=${CARGO_TARGET_DIR:-target}/release/detad
fi
[ -x "$bin" ] || { echo "[board] $bin is not an executable" >&2; exit 1; }

tmp=$(mktemp -d /tmp/detad-board.XXXXXX)
root=$tmp/root
pidfile=$tmp/run/detad.pid
logcopy=$tmp/syslog.txt
failed=1

cleanup() {
    # Never leave a daemon behind: the pidfile's process, then any process
    # running the installed binary.
    if [ -r "$pidfile" ]; then
        pid=$(cat "$pidfile" 2>/dev/null)
        [ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
    fi
    for p in /proc/[0-9]*; do
        if [ "$(readlink "$p/exe" 2>/dev/null)" = "$root/usr/sbin/detad" ] ||
            { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q "^[^ ]*$root/usr/sbin/detad "; then
            kill -KILL "${p#/proc/}" 2>/dev/null
        fi
    done
    if [ "$failed" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$tmp"
    else
        echo "[board] kept $tmp" >&2
    fi
}
trap cleanup EXIT
trap 'exit 1' INT TERM

fail() {
    echo "[board] FAIL: $*" >&2
    for f in "$tmp"/out.*; do
        [ -f "$f" ] && { echo "--- $f" >&2; cat "$f" >&2; }
    done
    echo "--- detad log as piped to logger ($logcopy):" >&2
    tail -n 40 "$logcopy" >&2 2>/dev/null
    exit 1
}

# --- make install ---------------------------------------------------------
if grep -q 'board/board.mk' Makefile 2>/dev/null; then mk="make"; else mk="make -f board/board.mk"; fi
say "$mk install DESTDIR=$root INSTALL_BIN=$bin"
# shellcheck disable=SC2086
timeout 120 $mk -s install DESTDIR="$root" INSTALL_BIN="$bin" >"$tmp/install.log" 2>&1 ||
    { cat "$tmp/install.log" >&2; fail "make install failed"; }

check_mode() {  # path mode
    [ -e "$root/$1" ] || fail "make install did not create /$1"
    m=$(stat -c %a "$root/$1")
    [ "$m" = "$2" ] || fail "/$1 has mode $m, expected $2"
}
check_mode usr/sbin/detad 755
check_mode etc/detad.conf 644
check_mode etc/init.d/S50detad 755
check_mode var/spool/detad 700
check_mode var/spool/maildir 700
say "installed layout and modes ok"

# --- point the installed config at $tmp and a free loopback port -----------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
conf=$root/etc/detad.conf
# The image's account `detad` does not exist on this host: run as nobody,
# the host's unprivileged account (the daemon starts as root and drops).
sed -e '/^[[:space:]]*listen[[:space:]]*=/d' \
    -e 's/^user = detad$/user = nobody/' \
    -e "s#/var/spool/#$root/var/spool/#g" "$conf" >"$tmp/detad.conf.new" || fail "sed"
echo "listen = 127.0.0.1:$port" >>"$tmp/detad.conf.new"
cat "$tmp/detad.conf.new" >"$conf"
grep -q "^spool = $root/var/spool/detad\$" "$conf" || fail "spool line not rewritten in $conf"
grep -q "^user = nobody\$" "$conf" || fail "user line not rewritten in $conf"
# nobody must be able to reach the spool and the Maildirs below $tmp.
chmod 755 "$tmp" "$root" "$root/var" "$root/var/spool"
spool=$root/var/spool/detad
maildir=$root/var/spool/maildir

# --- busybox applets first in PATH; logger copies what it logs -------------
mkdir -p "$tmp/bin" "$tmp/run"
"$BB" --install -s "$tmp/bin" 2>/dev/null
for a in sh start-stop-daemon logger setsid sleep kill cat sed; do
    [ -e "$tmp/bin/$a" ] || ln -s "$BB" "$tmp/bin/$a"
done
rm -f "$tmp/bin/logger"
# The test host has no syslogd; keep a copy of the log lines on their way
# into busybox logger so the test can see detad's log went through it.
cat >"$tmp/bin/logger" <<EOF
#!$BB sh
tee -a "$logcopy" | exec "$BB" logger "\$@"
EOF
chmod 755 "$tmp/bin/logger"
: >"$logcopy"

# run_init ACTION [CONF [NOTE]]: the installed init script under busybox sh.
# Output in $tmp/out.ACTION, exit status in $rc. Bounded; also fails if the
# script leaves its stdout/stderr open (a daemon or logger holding the pipe).
run_init() {
    action=$1
    c=${2:-$conf}
    note=${3:+ ($3)}
    rm -f "$tmp/rc"
    { timeout 90 env PATH="$tmp/bin:$PATH" DETAD_DEFAULTS=/nonexistent \
        DETAD_BIN="$root/usr/sbin/detad" DETAD_CONF="$c" DETAD_PIDFILE="$pidfile" \
        DETAD_STOP_TIMEOUT=30 RUST_LOG=info ${DETAD_NAME:+DETAD_NAME="$DETAD_NAME"} \
        "$BB" sh "$root/etc/init.d/S50detad" "$action" 2>&1
      echo $? >"$tmp/rc"; } | timeout 100 cat >"$tmp/out.$action"
    [ $? = 124 ] && fail "S50detad $action: its output pipe stayed open (a background process holds stdout/stderr)"
    rc=$(cat "$tmp/rc" 2>/dev/null)
    [ "$rc" = 124 ] && fail "S50detad $action did not finish within 90s"
    say "S50detad $action$note -> exit $rc: $(tr '\n' ' ' <"$tmp/out.$action")"
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

# --- start / status ---------------------------------------------------------
run_init start
[ "$rc" = 0 ] || fail "start exited $rc"
[ -s "$pidfile" ] || fail "no pidfile $pidfile after start"
pid=$(cat "$pidfile")
pid_alive "$pid" || fail "pid $pid from the pidfile is not running"
[ "$(readlink "/proc/$pid/exe")" = "$root/usr/sbin/detad" ] ||
    [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = "${DETAD_NAME:-detad}" ] ||
    fail "pid $pid is not detad: $(tr '\0' ' ' <"/proc/$pid/cmdline")"

uids=$(sed -n 's/^Uid:[[:space:]]*//p' "/proc/$pid/status" | tr -s ' \t' '  ')
[ "$uids" = "65534 65534 65534 65534" ] || fail "detad runs with uids $uids, not as nobody (65534) for good"
say "detad (pid $pid) runs unprivileged: uids $uids"

run_init status
[ "$rc" = 0 ] || fail "status exited $rc while running"
grep -q "running (pid $pid)" "$tmp/out.status" || fail "status does not show pid $pid"

run_init start   # again: must not start a second instance
[ "$rc" = 0 ] || fail "second start exited $rc"
grep -q "already running" "$tmp/out.start" || fail "second start did not say already running"
[ "$(cat "$pidfile")" = "$pid" ] || fail "second start changed the pidfile"

# --- a message through SMTP into the Maildir -------------------------------
say "sending a message to admin@gateway.lan via 127.0.0.1:$port"
timeout 60 python3 - "$port" <<'EOF' || fail "smtplib could not send the message"
import smtplib, sys
from email.message import EmailMessage
m = EmailMessage()
m["From"] = "sensor@gateway.lan"
m["To"] = "admin@gateway.lan"
m["Subject"] = "busybox init test"
m.set_content("reading: 42\n.leading dot line\n")
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=30) as s:
    s.ehlo("sensor.lan")
    refused = s.send_message(m)
    if refused:
        sys.exit(f"refused: {refused}")
EOF
new=$maildir/admin/new
i=0
until [ -n "$(ls -A "$new" 2>/dev/null)" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && fail "no message in $new after 20s"
    sleep 0.2
done
f=$(ls "$new" | head -n 1)
grep -q "reading: 42" "$new/$f" || fail "delivered message $new/$f lacks the body"
grep -q "^\.leading dot line" "$new/$f" || fail "delivered message $new/$f: dot line altered"
say "delivered: $new/$f"

# --- reload / flush ---------------------------------------------------------
run_init reload
[ "$rc" = 0 ] || fail "reload exited $rc"
sleep 1
pid_alive "$pid" || fail "detad died after reload (SIGHUP)"
[ "$(cat "$pidfile")" = "$pid" ] || fail "pid changed after reload"

run_init flush
[ "$rc" = 0 ] || fail "flush exited $rc"
grep -q WARNING "$tmp/out.flush" && fail "flush: detad flush failed, the script fell back to SIGUSR1"
pid_alive "$pid" || fail "detad died after flush"

run_init status
[ "$rc" = 0 ] || fail "status after reload/flush exited $rc"

# --- the log went through logger -------------------------------------------
[ -s "$logcopy" ] || fail "nothing reached logger (detad's stderr is not piped to syslog)"
say "logger received $(wc -l <"$logcopy") line(s), e.g.: $(head -n 1 "$logcopy")"

# --- stop -------------------------------------------------------------------
run_init stop
[ "$rc" = 0 ] || fail "stop exited $rc"
grep -q OK "$tmp/out.stop" || fail "stop did not report OK"
pid_alive "$pid" && fail "pid $pid still running after stop"
[ -e "$pidfile" ] && fail "pidfile $pidfile still there after stop"

run_init status
[ "$rc" = 3 ] || fail "status after stop exited $rc, expected 3 (not running)"
run_init stop    # stopping a stopped daemon is not an error
[ "$rc" = 0 ] || fail "stop when not running exited $rc"
run_init reload "" "must fail: not running"
[ "$rc" != 0 ] || fail "reload when not running exited 0"

# --- the spool is consistent ------------------------------------------------
for d in queue tmp corrupt; do
    if [ -d "$spool/$d" ] && [ -n "$(ls -A "$spool/$d")" ]; then
        fail "spool $d/ not empty after stop: $(ls -A "$spool/$d" | tr '\n' ' ')"
    fi
done
[ -d "$spool/queue" ] || fail "no $spool/queue: did detad use the configured spool?"
say "spool clean: queue/ tmp/ corrupt/ empty"

# --- a broken config: start fails, says why, leaves nothing running ---------
cp "$conf" "$tmp/bad.conf"
echo "no_such_key = 1" >>"$tmp/bad.conf"
run_init start "$tmp/bad.conf" "must fail: broken config"
[ "$rc" != 0 ] || fail "start with a broken config exited 0"
grep -q no_such_key "$tmp/out.start" || fail "start with a broken config did not show the error"
[ -e "$pidfile" ] && fail "pidfile left by a failed start"

# --- the inittab alternative parses ----------------------------------------
line=$(sed -n 's/^::respawn://p' board/etc/inittab.detad)
[ -n "$line" ] || fail "no ::respawn: line in board/etc/inittab.detad"
"$BB" sh -n -c "exec $line" || fail "inittab line does not parse: $line"

failed=0
say "PASS"
