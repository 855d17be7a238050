#!/bin/bash
# tests/interop/dovecot/selftest.sh -- proves the private Dovecot works for BURL.
#
# start.sh, mint.py (handset stores a message, GENURLAUTH), urlfetch.py as
# submit (URLFETCH of ANOTHER user's URL: the imap-urlauth-login panic case),
# byte-exact comparison with what was appended, STARTTLS, the error cases
# (wrong token, wrong port, a plain user fetching a submit+ URL -> NIL),
# a second URL owner (other), a restart keeping the URLs valid, stop.sh (twice),
# nothing left running, and finally the panic reproduced WITHOUT the relay
# (DOVECOT_NO_RELAY=1: informational, a Dovecot that no longer panics is noted,
# not failed).
#
# Listens on 127.0.0.1 only (free ports), every step bounded by `timeout`,
# cleans up (the scratch dir is kept on failure or with KEEP=1).
# Output: PASS/FAIL lines, then "N passed, N failed"; exit 0 only if none failed.
# Needs root and dovecot-imapd (tests/interop/install-deps.sh installs it;
# NO_INSTALL=1 never calls it).
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON3:-python3}
export PYTHONDONTWRITEBYTECODE=1

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS [dovecot] $*"; }
fail() { failed=$((failed + 1)); echo "FAIL [dovecot] $*"; }
note() { echo "     [dovecot] $*"; }
check() { # check NAME COMMAND...: PASS if the command succeeds
    name=$1
    shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}

WORK=$(mktemp -d /tmp/detad-dovecot.XXXXXX) || exit 1
W=$WORK/dc   # start.sh's WORKDIR
W2=$WORK/dc-norelay

finish() {
    timeout 60 sh "$HERE/stop.sh" "$W" 2>/dev/null
    timeout 60 sh "$HERE/stop.sh" "$W2" 2>/dev/null
    echo
    if [ "$failed" = 0 ] && [ "${KEEP:-0}" != 1 ]; then
        rm -rf "$WORK"
    else
        echo "configs, logs and mail kept in $WORK"
    fi
    echo "$passed passed, $failed failed"
    [ "$failed" = 0 ]
    exit $?
}
trap 'fail "interrupted"; finish' INT TERM HUP

# --- dovecot-imapd -----------------------------------------------------------------
if [ ! -x /usr/lib/dovecot/imap-urlauth-login ] && [ "${NO_INSTALL:-0}" != 1 ]; then
    note "dovecot-imapd missing: running tests/interop/install-deps.sh"
    timeout 1200 sh "$HERE/../install-deps.sh" >"$WORK/install.log" 2>&1 ||
        note "install-deps.sh failed (log: $WORK/install.log)"
fi
if [ ! -x /usr/lib/dovecot/imap-urlauth-login ]; then
    fail "dovecot-imapd installed (run tests/interop/install-deps.sh as root)"
    finish
fi

free_port() {
    timeout 10 "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
PORT=$(free_port) || { fail "no free port"; finish; }

# pids_of_instance DIR: the master of DIR's Dovecot, its descendants and the
# relay (what stop.sh must leave nothing of).
pids_of_instance() {
    "$PY" - "$1" <<'EOF'
import os, sys
w = sys.argv[1]
def read(p):
    try:
        with open(p, "rb") as f:
            return f.read()
    except OSError:
        return b""
roots = set()
for name in ("run/master.pid", "relay.pid"):
    t = read(os.path.join(w, name)).strip()
    if t.isdigit():
        roots.add(t.decode())
# any process naming WORKDIR on its command line (master, relay)
parent = {}
for p in os.listdir("/proc"):
    if not p.isdigit():
        continue
    stat = read(f"/proc/{p}/stat").decode(errors="replace")
    if ")" in stat:
        parent[p] = stat.rsplit(")", 1)[1].split()[1]
    if w.encode() + b"/" in read(f"/proc/{p}/cmdline"):
        roots.add(p)
want = set(r for r in roots if r in parent)
changed = True
while changed:
    changed = False
    for p, pp in parent.items():
        if p not in want and pp in want:
            want.add(p)
            changed = True
print(" ".join(sorted(want, key=int)))
EOF
}

# only_loopback_listeners DIR PORT: every TCP socket the instance listens on
# is 127.0.0.1:PORT (from /proc/PID/fd socket inodes and /proc/net/tcp{,6}).
only_loopback_listeners() {
    pids=$(pids_of_instance "$1")
    "$PY" - "$2" $pids <<'EOF'
import os, sys
port, pids = int(sys.argv[1]), sys.argv[2:]
inodes = set()
for p in pids:
    try:
        for fd in os.listdir(f"/proc/{p}/fd"):
            try:
                l = os.readlink(f"/proc/{p}/fd/{fd}")
            except OSError:
                continue
            if l.startswith("socket:["):
                inodes.add(l[8:-1])
    except OSError:
        pass
found = []
for tab in ("/proc/net/tcp", "/proc/net/tcp6"):
    with open(tab) as f:
        next(f)
        for line in f:
            x = line.split()
            if x[3] == "0A" and x[9] in inodes:  # LISTEN, ours
                addr, prt = x[1].split(":")
                found.append((tab, addr, int(prt, 16)))
ok = found and all(t == "/proc/net/tcp" and a == "0100007F" and p == port for t, a, p in found)
if not ok:
    print(f"listeners: {found}", file=sys.stderr)
sys.exit(0 if ok else 1)
EOF
}

port_closed() {
    timeout 10 "$PY" -c 'import socket,sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2).close()
except OSError:
    sys.exit(0)
sys.exit(1)' "$1"
}

# --- the messages (CRLF, dot lines, an 8-bit line, no final empty line issue) -------
MSG1=$WORK/msg1.eml
MSG2=$WORK/msg2.eml
printf 'From: handset@example.test\r\nTo: rcpt@example.test\r\nSubject: BURL selftest 1\r\nMessage-ID: <selftest-1@handset.test>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\nfirst line\r\n.leading dot\r\n.\r\n..\r\n8-bit: gr\303\274\303\237e\r\nlast line\r\n' >"$MSG1"
printf 'From: other@example.test\r\nTo: rcpt@example.test\r\nSubject: BURL selftest 2 (other)\r\n\r\nbody of other\r\n' >"$MSG2"

# --- start ------------------------------------------------------------------------------
# mail_debug: Dovecot then logs why a URLFETCH gave NIL; the NIL cases below
# check that reason, so each NIL is the intended one.
export DOVECOT_MAIL_DEBUG=yes
if timeout 90 bash "$HERE/start.sh" "$W" "$PORT" 2>"$WORK/start.err"; then
    pass "start.sh: dovecot $(/usr/sbin/dovecot --version | cut -d' ' -f1) answers on 127.0.0.1:$PORT"
else
    fail "start.sh: $(cat "$WORK/start.err")"
    finish
fi
[ -s "$WORK/start.err" ] && fail "start.sh printed: $(cat "$WORK/start.err")"
check "listens on 127.0.0.1:$PORT only (no other TCP listener)" only_loopback_listeners "$W" "$PORT"
check "submit's password in WORKDIR/submit.pass" test -s "$W/submit.pass"

# --- handset mints, submit fetches --------------------------------------------------
URL1=$(timeout 60 "$PY" "$HERE/mint.py" "$W" "$PORT" "$MSG1" 2>"$WORK/mint1.err")
rc=$?
re="^imap://handset@127\.0\.0\.1:$PORT/outbox;uidvalidity=[0-9]+/;uid=[0-9]+;urlauth=submit\+handset:internal:[0-9a-f]{32,}\$"
if [ $rc = 0 ] && [[ $URL1 =~ $re ]]; then
    pass "mint.py: handset APPEND + GENURLAUTH -> $URL1"
else
    fail "mint.py (exit $rc): '$URL1' $(cat "$WORK/mint1.err")"
    finish
fi

fetch() { # fetch NAME OUTFILE ARGS...: urlfetch.py, its exit code in $frc
    name=$1 out=$2
    shift 2
    timeout 60 "$PY" "$HERE/urlfetch.py" --workdir "$W" "$@" >"$out" 2>"$out.err"
    frc=$?
}

fetch submit "$WORK/fetch1" "$PORT" "$URL1"
if [ $frc = 0 ] && cmp -s "$MSG1" "$WORK/fetch1"; then
    pass "urlfetch.py as submit: handset's message, byte-exact ($(wc -c <"$MSG1") bytes)"
else
    fail "urlfetch.py as submit (exit $frc): $(cat "$WORK/fetch1.err"); cmp: $(cmp "$MSG1" "$WORK/fetch1" 2>&1)"
fi
# (the relay logs Python reprs: a literal backslash-t between the fields)
if grep -qF "rewrote b'MECH\\tDOVECOT-TOKEN' -> b'MECH\\tDOVECOT-TOKEN\\tprivate'" "$W/relay.log"; then
    pass "the relay added the private flag to DOVECOT-TOKEN ($(grep -c rewrote "$W/relay.log") time(s))"
else
    fail "the relay log shows no DOVECOT-TOKEN rewrite: $(tail -n 5 "$W/relay.log")"
fi
check "imap-urlauth-login logged in submit with DOVECOT-TOKEN" \
    grep -q 'imap-urlauth-login: Info: Login: user=<submit>, method=DOVECOT-TOKEN' "$W/dovecot.log"

fetch submit-tls "$WORK/fetch1tls" --starttls "$PORT" "$URL1"
if [ $frc = 0 ] && cmp -s "$MSG1" "$WORK/fetch1tls"; then
    pass "urlfetch.py --starttls (certificate checked) as submit: byte-exact"
else
    fail "urlfetch.py --starttls (exit $frc): $(cat "$WORK/fetch1tls.err")"
fi

# --- error cases: NIL -----------------------------------------------------------------
# nil_case NAME REASON URLFETCH-ARGS...: urlfetch.py must exit 1 (NIL), print
# nothing on stdout, and dovecot.log must give REASON for a failed fetch of
# that URL (the last argument).
nil_case() {
    name=$1 reason=$2
    shift 2
    n=$((n + 1))
    fetch "$name" "$WORK/nil$n" "$@"
    url=${!#}
    if [ $frc = 1 ] && [ ! -s "$WORK/nil$n" ] &&
        grep -F "Failed to fetch URLAUTH \"$url\": " "$W/dovecot.log" | grep -qF "$reason"; then
        pass "$name -> NIL ($reason)"
    else
        fail "$name: exit $frc, expected 1 (NIL) for '$reason': $(cat "$WORK/nil$n.err")"
    fi
}
n=0

# The last hex digit of the token changed.
last=${URL1: -1}
case $last in 0) new=1 ;; *) new=0 ;; esac
nil_case "wrong token" "URLAUTH verification failed" "$PORT" "${URL1%?}$new"
# The URL's port is not imap_urlauth_port.
nil_case "URL with another port" "Inappropriate server port" \
    "$PORT" "${URL1/127.0.0.1:$PORT/127.0.0.1:$((PORT + 1))}"

# A second owner, `other`: submit can fetch its URL; plain users cannot.
URL2=$(timeout 60 "$PY" "$HERE/mint.py" --user other "$W" "$PORT" "$MSG2" 2>"$WORK/mint2.err")
rc=$?
if [ $rc = 0 ] && [[ $URL2 == "imap://other@127.0.0.1:$PORT/outbox;"*";urlauth=submit+other:internal:"* ]]; then
    pass "mint.py --user other -> $URL2"
else
    fail "mint.py --user other (exit $rc): $(cat "$WORK/mint2.err")"
fi
fetch submit2 "$WORK/fetch2" "$PORT" "$URL2"
if [ $frc = 0 ] && cmp -s "$MSG2" "$WORK/fetch2"; then
    pass "submit fetches other's URL: byte-exact"
else
    fail "submit fetching other's URL (exit $frc): $(cat "$WORK/fetch2.err")"
fi
nil_case "handset (not the submit user) fetching other's submit+ URL" \
    "No 'submit+other' access allowed for user handset" --user handset "$PORT" "$URL2"
nil_case "other (not the submit user) fetching handset's submit+ URL" \
    "No 'submit+handset' access allowed for user other" --user other "$PORT" "$URL1"
nil_case "handset fetching its own submit+handset URL" \
    "No 'submit+handset' access allowed for user handset" --user handset "$PORT" "$URL1"

if grep -q 'Panic' "$W/dovecot.log"; then
    fail "dovecot.log has a Panic: $(grep Panic "$W/dovecot.log" | head -n 1)"
else
    pass "no Panic in dovecot.log"
fi

# --- restart (start.sh on a running WORKDIR), URLs still valid --------------------------
before=$(pids_of_instance "$W")
if timeout 90 bash "$HERE/start.sh" "$W" "$PORT" 2>"$WORK/start2.err" && [ ! -s "$WORK/start2.err" ]; then
    pass "start.sh again on the running WORKDIR: restarted, quiet"
else
    fail "start.sh again: $(cat "$WORK/start2.err")"
fi
left=""
for p in $before; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left="$left $p"; done
check "the first instance's processes are gone after the restart" test -z "$left"
fetch submit-again "$WORK/fetch6" "$PORT" "$URL1"
if [ $frc = 0 ] && cmp -s "$MSG1" "$WORK/fetch6"; then
    pass "after the restart the URL still fetches (mailbox key kept in dovecot-attributes)"
else
    fail "after the restart (exit $frc): $(cat "$WORK/fetch6.err")"
fi

# --- stop ---------------------------------------------------------------------------------
pids=$(pids_of_instance "$W")
if timeout 60 sh "$HERE/stop.sh" "$W" 2>"$WORK/stop.err" && [ ! -s "$WORK/stop.err" ]; then
    pass "stop.sh ($(echo $pids | wc -w) processes)"
else
    fail "stop.sh: $(cat "$WORK/stop.err")"
fi
left=""
for p in $pids; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left="$left $p"; done
rest=$(pids_of_instance "$W")
check "nothing of the instance left running${left:+ (left:$left)}${rest:+ (found:$rest)}" test -z "$left$rest"
check "127.0.0.1:$PORT closed" port_closed "$PORT"
stop_again() {
    out=$(timeout 60 sh "$HERE/stop.sh" "$W" 2>&1)
    [ $? = 0 ] && [ -z "$out" ]
}
check "stop.sh again (nothing running): exit 0, quiet" stop_again

# --- the panic without the relay (evidence that the workaround is needed) ---------------
PORT2=$(free_port)
unset DOVECOT_MAIL_DEBUG
if DOVECOT_NO_RELAY=1 timeout 90 bash "$HERE/start.sh" "$W2" "$PORT2" 2>"$WORK/start3.err"; then
    URL3=$(timeout 60 "$PY" "$HERE/mint.py" "$W2" "$PORT2" "$MSG1" 2>"$WORK/mint3.err")
    timeout 60 "$PY" "$HERE/urlfetch.py" --workdir "$W2" "$PORT2" "$URL3" >"$WORK/fetch7" 2>"$WORK/fetch7.err"
    frc=$?
    panic=$(grep -m1 'imap-urlauth-login: Panic' "$W2/dovecot.log")
    if [ -n "$panic" ] && [ $frc != 0 ]; then
        pass "without the relay, stock imap-urlauth-login panics (urlfetch.py exit $frc): ${panic#* * * }"
    elif [ -z "$panic" ] && [ $frc = 0 ]; then
        note "without the relay there was no panic: this Dovecot has the 2.4.0 fix; the relay is harmless"
    else
        fail "without the relay: urlfetch exit $frc, panic '${panic}': $(cat "$WORK/fetch7.err")"
    fi
    pids=$(pids_of_instance "$W2")
    timeout 60 sh "$HERE/stop.sh" "$W2"
    left=""
    for p in $pids; do [ -d "/proc/$p" ] && ! grep -q '^State:.*Z' "/proc/$p/status" 2>/dev/null && left="$left $p"; done
    check "the relay-less instance stopped, nothing left${left:+ (left:$left)}" test -z "$left"
else
    fail "DOVECOT_NO_RELAY=1 start.sh: $(cat "$WORK/start3.err")"
fi

finish
