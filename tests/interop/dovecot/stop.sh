#!/bin/sh
# tests/interop/dovecot/stop.sh WORKDIR
#
# Stops the private Dovecot that start.sh started for WORKDIR, every process
# it had (login, auth, imap, imap-urlauth*, ...) and tokenlogin_relay.py.
# Nothing running for WORKDIR is fine (exit 0): stop.sh is idempotent.
#
# Only processes found through WORKDIR are touched: the master named in
# WORKDIR/run/master.pid (checked to be /usr/sbin/dovecot with
# "-c WORKDIR/dovecot.conf"), its descendants, and the relay named in
# WORKDIR/relay.pid (checked to be tokenlogin_relay.py for WORKDIR).
# SIGTERM, a bounded wait (10 s), then SIGKILL. Prints nothing but errors;
# exit 1 if something could not be stopped.
set -u

me="dovecot/stop.sh"
err() { echo "$me: $*" >&2; }
if [ $# -ne 1 ]; then
    err "usage: stop.sh WORKDIR"
    exit 2
fi
[ -d "$1" ] || exit 0
W=$(cd "$1" && pwd) || exit 1

alive() { [ -d "/proc/$1" ] && ! grep -q '^State:[[:space:]]*Z' "/proc/$1/status" 2>/dev/null; }

# descendants PID: every process below PID (children first-level and deeper),
# from the ppid field of /proc/*/stat.
descendants() {
    for s in /proc/[0-9]*/stat; do
        # pid (comm) state ppid ...: strip up to the last ')' (comm may hold spaces)
        line=$(cat "$s" 2>/dev/null) || continue
        rest=${line##*) }
        set -- $rest
        echo "${s#/proc/} $2"
    done | awk -v root="$1" '
        { sub(/\/stat$/, "", $1); parent[$1] = $2 }
        END {
            want[root] = 1; changed = 1
            while (changed) {
                changed = 0
                for (p in parent) if (!(p in want) && (parent[p] in want)) { want[p] = 1; changed = 1 }
            }
            for (p in want) if (p != root) print p
        }'
}

# stop_pids PIDS: TERM, wait up to 10 s, KILL what is left.
stop_pids() {
    [ -n "$1" ] || return 0
    for p in $1; do kill -TERM "$p" 2>/dev/null; done
    i=0
    while [ $i -lt 100 ]; do
        left=""
        for p in $1; do alive "$p" && left="$left $p"; done
        [ -z "$left" ] && return 0
        sleep 0.1
        i=$((i + 1))
    done
    err "still running after SIGTERM:$left; SIGKILL"
    for p in $left; do kill -KILL "$p" 2>/dev/null; done
    sleep 0.5
    for p in $left; do
        if alive "$p"; then err "pid $p survives SIGKILL"; return 1; fi
    done
    return 0
}

rc=0

# --- the Dovecot master and its children --------------------------------------------
mpid=$(cat "$W/run/master.pid" 2>/dev/null)
case $mpid in '' | *[!0-9]*) mpid="" ;; esac
if [ -n "$mpid" ] && alive "$mpid"; then
    exe=$(readlink "/proc/$mpid/exe" 2>/dev/null)
    if [ "$exe" = /usr/sbin/dovecot ] &&
        tr '\000' '\n' <"/proc/$mpid/cmdline" | grep -qxF "$W/dovecot.conf"; then
        kids=$(descendants "$mpid")
        # The master stops its children itself on SIGTERM; anything still
        # there once it is gone gets the same treatment.
        stop_pids "$mpid" || rc=1
        left=""
        for p in $kids; do alive "$p" && left="$left $p"; done
        stop_pids "$left" || rc=1
    else
        err "pid $mpid in $W/run/master.pid is not this WORKDIR's dovecot; left alone"
    fi
fi
rm -f "$W/run/master.pid"

# --- the relay --------------------------------------------------------------------------
rpid=$(cat "$W/relay.pid" 2>/dev/null)
case $rpid in '' | *[!0-9]*) rpid="" ;; esac
if [ -n "$rpid" ] && alive "$rpid"; then
    if tr '\000' '\n' <"/proc/$rpid/cmdline" | grep -q 'tokenlogin_relay\.py$' &&
        tr '\000' '\n' <"/proc/$rpid/cmdline" | grep -qxF "$W/relay.pid"; then
        stop_pids "$rpid" || rc=1
    else
        err "pid $rpid in $W/relay.pid is not this WORKDIR's relay; left alone"
    fi
fi
rm -f "$W/relay.pid"
exit $rc
