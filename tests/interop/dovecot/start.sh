#!/bin/bash
# tests/interop/dovecot/start.sh WORKDIR PORT
#
# Starts a private Dovecot IMAP server with URLAUTH (RFC 4467) for the BURL
# interop tests, listening ONLY on 127.0.0.1:PORT (plain imap, STARTTLS offered
# with a self-signed certificate made here at run time, not required).
# Everything lives under WORKDIR (created if missing):
#
#   dovecot.conf       the whole configuration (no /etc/dovecot/conf.d)
#   dovecot.log        Dovecot's log (every process, info and debug too)
#   relay.log          tokenlogin_relay.py's log (the panic workaround)
#   users              passwd-file passdb/userdb (0640 root:dovecot)
#   handset.pass other.pass submit.pass   the passwords (submit's is random,
#                      made once and kept; the others are fixed, see below)
#   home/USER          each user's home: Maildir/, dovecot-attributes (the
#                      URLAUTH mailbox keys)
#   run/               base_dir (sockets, master.pid), state/  state_dir
#   tls/               cert.pem, key.pem (self-signed, made by openssl here; an
#                      end-entity certificate, CA:FALSE, so that a verifying
#                      client such as detad's (rustls) can pin it as its own
#                      trust anchor with burl_ca)
#
# Users: handset/handset-pass and other/other-pass (the URL owners), submit
# (imap_urlauth_submit_user: the identity detad logs in with; password in
# WORKDIR/submit.pass). All map to the unprivileged system user detad-imap
# (created here if missing, idempotently); imap-urlauth-worker switches to it.
#
# Starting twice is fine: a Dovecot already running for WORKDIR is stopped
# first (stop.sh), so afterwards exactly one fresh instance runs.
#
# The Dovecot 2.3.10..2.3.21 imap-urlauth-login panic is worked around by
# tokenlogin_relay.py (see README.md and that file). DOVECOT_NO_RELAY=1
# starts Dovecot without it (only to reproduce the panic).
# DOVECOT_TLS=0: ssl = no (no STARTTLS, no certificate made).
#
# Prints nothing but errors. Exit 0 once 127.0.0.1:PORT answers "* OK" and the
# relay listens; non-zero otherwise (with the log tail). Every wait is bounded.
set -u

me="dovecot/start.sh"
err() { echo "$me: $*" >&2; }
HERE=$(cd "$(dirname "$0")" && pwd)
PY=${PYTHON3:-python3}

if [ $# -ne 2 ]; then
    err "usage: start.sh WORKDIR PORT"
    exit 2
fi
case $2 in
'' | *[!0-9]*) err "PORT must be a number: $2"; exit 2 ;;
esac
PORT=$2
if [ "$PORT" -lt 1 ] || [ "$PORT" -gt 65535 ]; then err "bad PORT $PORT"; exit 2; fi
if [ "$(id -u)" != 0 ]; then err "must run as root (the Dovecot master)"; exit 1; fi
for f in /usr/sbin/dovecot /usr/lib/dovecot/imap-urlauth-login /usr/lib/dovecot/imap-urlauth-worker; do
    [ -x "$f" ] || { err "$f missing: run tests/interop/install-deps.sh"; exit 1; }
done

mkdir -p "$1" || exit 1
W=$(cd "$1" && pwd) || exit 1
# Unix socket paths are limited to 107 bytes; the longest one we use is
# run/token-login/relay-tokenlogin.
if [ ${#W} -gt 60 ]; then err "WORKDIR path too long for Dovecot's sockets (>60): $W"; exit 1; fi

# An instance already running for this WORKDIR: stop it (start = restart).
sh "$HERE/stop.sh" "$W" || exit 1

MAIL_USER=${DOVECOT_MAIL_USER:-detad-imap}
HANDSET_PASS=handset-pass
OTHER_PASS=other-pass
RELAY_NAME=relay-tokenlogin

# --- the unprivileged mail user (idempotent) ----------------------------------
if ! id -u "$MAIL_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$MAIL_USER" >/dev/null 2>&1 ||
        id -u "$MAIL_USER" >/dev/null 2>&1 || { err "useradd $MAIL_USER failed"; exit 1; }
fi
MUID=$(id -u "$MAIL_USER") || exit 1
MGID=$(id -g "$MAIL_USER") || exit 1
getent group dovecot >/dev/null 2>&1 || { err "group dovecot missing (dovecot-core not installed?)"; exit 1; }

# The mail user (homes), dovecot (auth reads the users file) and dovenull (login
# processes) must be able to traverse every directory down to WORKDIR: add the
# search bit (x, never r) for others where it is missing, e.g. on mktemp -d
# directories (0700).
d=$W
while [ "$d" != / ] && [ -n "$d" ]; do
    case $(stat -c %A "$d") in
    *x | *t) ;;
    *) chmod o+x "$d" || { err "cannot chmod o+x $d"; exit 1; } ;;
    esac
    d=$(dirname "$d")
done

# --- files: passwords, users, homes, TLS ----------------------------------------
umask 022
mkdir -p "$W/run" "$W/state" "$W/home" || exit 1
chmod 0755 "$W/run"
chmod 0750 "$W/state"
[ -s "$W/submit.pass" ] || {
    (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$W/submit.pass") || exit 1
}
printf '%s' "$HANDSET_PASS" >"$W/handset.pass"
printf '%s' "$OTHER_PASS" >"$W/other.pass"
chmod 0600 "$W/submit.pass" "$W/handset.pass" "$W/other.pass"
SUBMIT_PASS=$(cat "$W/submit.pass")

# passwd-file: user:{PLAIN}password:uid:gid::home:: (plain text: a test box)
users_tmp="$W/users.tmp"
: >"$users_tmp"
for u in handset other submit; do
    case $u in handset) pw=$HANDSET_PASS ;; other) pw=$OTHER_PASS ;; submit) pw=$SUBMIT_PASS ;; esac
    mkdir -p "$W/home/$u"
    chown "$MUID:$MGID" "$W/home/$u"
    chmod 0700 "$W/home/$u"
    printf '%s:{PLAIN}%s:%s:%s::%s::\n' "$u" "$pw" "$MUID" "$MGID" "$W/home/$u" >>"$users_tmp"
done
chown root:dovecot "$users_tmp" && chmod 0640 "$users_tmp" && mv -f "$users_tmp" "$W/users" || exit 1

TLS=${DOVECOT_TLS:-1}
if [ "$TLS" = 1 ]; then
    mkdir -p "$W/tls" && chmod 0700 "$W/tls"
    if [ ! -s "$W/tls/cert.pem" ] || [ ! -s "$W/tls/key.pem" ]; then
        timeout 60 openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
            -nodes -days 2 -subj "/CN=127.0.0.1" -addext "subjectAltName=IP:127.0.0.1" \
            -addext "basicConstraints=critical,CA:FALSE" -addext "extendedKeyUsage=serverAuth" \
            -keyout "$W/tls/key.pem" -out "$W/tls/cert.pem" >/dev/null 2>&1 ||
            { err "openssl could not make a self-signed certificate"; exit 1; }
        chmod 0600 "$W/tls/key.pem"
    fi
    ssl_conf="ssl = yes
ssl_cert = <$W/tls/cert.pem
ssl_key = <$W/tls/key.pem"
else
    ssl_conf="ssl = no"
fi

if [ "${DOVECOT_NO_RELAY:-0}" = 1 ]; then
    urlauth_login_conf="# DOVECOT_NO_RELAY=1: stock imap-urlauth-login (panics on URLFETCH of another user's URL)"
else
    urlauth_login_conf="# The panic workaround: imap-urlauth-login talks to tokenlogin_relay.py
# (run/token-login/$RELAY_NAME; relative to its chroot run/token-login) instead
# of the auth server's tokenlogin socket. See tests/interop/dovecot/README.md.
service imap-urlauth-login {
  executable = imap-urlauth-login $RELAY_NAME
}"
fi

# --- dovecot.conf ---------------------------------------------------------------------
cat >"$W/dovecot.conf.tmp" <<EOF
# Written by tests/interop/dovecot/start.sh -- a private test instance.
# Dovecot $(/usr/sbin/dovecot --version 2>/dev/null)
instance_name = detad-dovecot-$PORT
base_dir = $W/run
state_dir = $W/state
log_path = $W/dovecot.log
info_log_path = $W/dovecot.log
debug_log_path = $W/dovecot.log
auth_verbose = yes
auth_debug = ${DOVECOT_AUTH_DEBUG:-no}
mail_debug = ${DOVECOT_MAIL_DEBUG:-no}

protocols = imap
listen = 127.0.0.1
$ssl_conf
disable_plaintext_auth = no
auth_mechanisms = plain login

# The mail users are all $MAIL_USER (uid $MUID).
first_valid_uid = $MUID
last_valid_uid = $MUID
first_valid_gid = $MGID
last_valid_gid = $MGID
mail_location = maildir:~/Maildir
# URLAUTH keeps its per-mailbox keys in private mailbox attributes: without a
# mail_attribute_dict the imap process does not even announce URLAUTH.
mail_attribute_dict = file:%h/dovecot-attributes

passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%u $W/users
}
userdb {
  driver = passwd-file
  args = username_format=%u $W/users
}

# URLAUTH (RFC 4467). Host and port must equal the URLs' own: the URLs are
# imap://USER@127.0.0.1:$PORT/... (the port is in the URL since it is not 143).
imap_urlauth_host = 127.0.0.1
imap_urlauth_port = $PORT
# A session logged in as this user gets submit+ access in URLFETCH.
imap_urlauth_submit_user = submit

service imap-login {
  inet_listener imap {
    address = 127.0.0.1
    port = $PORT
  }
  inet_listener imaps {
    port = 0
  }
}
# imap-urlauth, imap-urlauth-worker and their sockets (run/imap-urlauth,
# run/token-login/imap-urlauth, run/imap-urlauth-worker) keep Dovecot's
# defaults; the auth server's run/token-login/tokenlogin too.
$urlauth_login_conf
EOF
mv -f "$W/dovecot.conf.tmp" "$W/dovecot.conf" || exit 1

# --- start ----------------------------------------------------------------------------
: >>"$W/dovecot.log"
# Not $(...): the daemonised master keeps its stderr open, so a pipe would
# never see EOF. Its start-up errors go to a file instead.
if ! timeout 30 /usr/sbin/dovecot -c "$W/dovecot.conf" </dev/null >"$W/start.err" 2>&1; then
    err "dovecot did not start: $(cat "$W/start.err")"
    tail -n 20 "$W/dovecot.log" >&2
    exit 1
fi
[ -s "$W/start.err" ] && err "$(cat "$W/start.err")"

# master.pid appears once the master has daemonised.
i=0
while [ ! -s "$W/run/master.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
MPID=$(cat "$W/run/master.pid" 2>/dev/null)
if [ -z "$MPID" ] || ! kill -0 "$MPID" 2>/dev/null; then
    err "no dovecot master running (run/master.pid: '${MPID:-}')"
    tail -n 20 "$W/dovecot.log" >&2
    exit 1
fi

fail_start() {
    err "$*"
    tail -n 20 "$W/dovecot.log" >&2
    sh "$HERE/stop.sh" "$W"
    exit 1
}

# The relay, once the auth server's token-login directory exists.
if [ "${DOVECOT_NO_RELAY:-0}" != 1 ]; then
    i=0
    while [ ! -S "$W/run/token-login/tokenlogin" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -S "$W/run/token-login/tokenlogin" ] || fail_start "auth socket run/token-login/tokenlogin never appeared"
    rm -f "$W/relay.pid"
    # setsid: its own session, not killed with the caller's process group.
    setsid "$PY" "$HERE/tokenlogin_relay.py" \
        --listen "$W/run/token-login/$RELAY_NAME" \
        --connect "$W/run/token-login/tokenlogin" \
        --pidfile "$W/relay.pid" --master-pid "$MPID" \
        </dev/null >>"$W/relay.log" 2>&1 &
    i=0
    while [ ! -s "$W/relay.pid" ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
    [ -s "$W/relay.pid" ] && [ -S "$W/run/token-login/$RELAY_NAME" ] ||
        fail_start "tokenlogin_relay.py did not start (see $W/relay.log)"
fi

# Bounded wait until 127.0.0.1:PORT greets with "* OK".
if ! timeout 20 "$PY" - "$PORT" <<'EOF'; then
import socket, sys, time
port = int(sys.argv[1])
for _ in range(150):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            if s.recv(512).startswith(b"* OK"):
                sys.exit(0)
    except OSError:
        pass
    time.sleep(0.1)
sys.exit(1)
EOF
    fail_start "127.0.0.1:$PORT does not answer with an IMAP greeting"
fi
exit 0
