#!/bin/sh
# tests/interop/install-deps.sh -- install the real peers of `make interop`
# on Debian (as root): swaks (with its TLS modules), curl, busybox, s-nail, openssl,
# Postfix (for smtp-sink), Dovecot's IMAP server (dovecot-imapd, for the
# BURL/URLAUTH tests; it ships imap-urlauth, imap-urlauth-login and
# imap-urlauth-worker), and aiosmtpd from PyPI for the uplink suite.
#
# - aiosmtpd goes into its own virtual environment, $DETAD_INTEROP_VENV
#   (default /opt/detad-interop/venv), made with `$PYTHON3 -m venv` (Debian
#   needs python3-venv for that, installed here) and filled with pip: Debian
#   12's python3 is externally managed (PEP 668), so no
#   --break-system-packages, and nothing of the system's Python changes.
#   Remove the directory to undo it.
# - Skips everything that is already present (no apt-get at all then).
# - Non-interactive (DEBIAN_FRONTEND=noninteractive, debconf answers preset).
# - Postfix conflicts with other MTAs and its maintainer scripts would start a
#   daemon on port 25; dovecot-core's would start the system Dovecot on 143.
#   While installing, /usr/sbin/policy-rc.d exits 101 so invoke-rc.d (and
#   deb-systemd-invoke) start nothing. A policy-rc.d that was there before is
#   put back afterwards; one we created is removed.
# - Afterwards no system postfix master and no system Dovecot may be running
#   (stopped if one is). Private Postfix instances (`make bench`: MAIL_CONFIG
#   set to its own directory) are left alone. The tests run private Dovecots only
#   (tests/interop/dovecot/start.sh, always `dovecot -c WORKDIR/dovecot.conf`);
#   those are left alone.
#
# Exit 0 when every peer is there, 1 otherwise (with what is missing).
set -u

me=install-deps.sh
say() { echo "$me: $*" >&2; }

PY=${PYTHON3:-python3}
VENV=${DETAD_INTEROP_VENV:-/opt/detad-interop/venv}
# aiosmtpd 1.4 is the API test_uplink.py is written against.
AIOSMTPD='aiosmtpd>=1.4,<2'
aiosmtpd_ok() { "$VENV/bin/python3" -c 'import aiosmtpd' >/dev/null 2>&1; }
# `python3 -m venv` needs ensurepip, which Debian ships in python3-venv.
venv_ok() { "$PY" -c 'import ensurepip, venv' >/dev/null 2>&1; }

install_aiosmtpd() {
    aiosmtpd_ok && return 0
    say "installing $AIOSMTPD into the venv $VENV"
    if [ ! -x "$VENV/bin/python3" ]; then
        mkdir -p "$(dirname "$VENV")" && timeout 300 "$PY" -m venv "$VENV" >&2 ||
            { say "cannot create the venv $VENV"; return 1; }
    fi
    for attempt in 1 2; do
        timeout 600 "$VENV/bin/python3" -m pip install -q --disable-pip-version-check "$AIOSMTPD" >&2 && break
        say "pip install $AIOSMTPD failed (attempt $attempt)"
        sleep 2
    done
    aiosmtpd_ok
}

# absent NAME: the peers not on this machine, each with a leading space;
# a missing smtp-sink is named NAME.
absent() {
    m=""
    for tool in swaks curl busybox s-nail; do
        command -v "$tool" >/dev/null 2>&1 || m="$m $tool"
    done
    [ -x /usr/sbin/smtp-sink ] || m="$m $1"
    command -v python3 >/dev/null 2>&1 || m="$m python3"
    # dovecot-imapd: the master, the imap binary and the three URLAUTH ones.
    for f in /usr/sbin/dovecot /usr/lib/dovecot/imap /usr/lib/dovecot/imap-urlauth \
        /usr/lib/dovecot/imap-urlauth-login /usr/lib/dovecot/imap-urlauth-worker; do
        [ -x "$f" ] || { m="$m dovecot-imapd"; break; }
    done
    command -v openssl >/dev/null 2>&1 || m="$m openssl"
    aiosmtpd_ok || venv_ok || m="$m python3-venv"
    # swaks --tls/--tlsc need Perl's Net::SSLeay and IO::Socket::SSL.
    perl -MNet::SSLeay -MIO::Socket::SSL -e1 >/dev/null 2>&1 || m="$m libnet-ssleay-perl libio-socket-ssl-perl"
    echo "$m"
}

need=$(absent postfix)

postfix_running() {
    # A postfix master process of the system (the daemon), by /proc scan (no
    # pgrep needed). Private instances (`postfix -c DIR start`, as `make bench`
    # runs one) are left alone: their master has MAIL_CONFIG=DIR in its
    # environment, DIR not /etc/postfix.
    for d in /proc/[0-9]*; do
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in
        # Debian: /usr/lib/postfix/sbin/master
        */postfix/sbin/master | */postfix/master)
            conf=$(tr '\000' '\n' <"$d/environ" 2>/dev/null | sed -n 's/^MAIL_CONFIG=//p')
            case "$conf" in
            "" | /etc/postfix | /etc/postfix/) echo "${d#/proc/}"; return 0 ;;
            esac
            ;;
        esac
    done
    return 1
}

stop_postfix() {
    pids=$(postfix_running) || return 0
    say "a postfix master is running (pid $pids); stopping it"
    if command -v postfix >/dev/null 2>&1; then
        timeout 30 postfix stop >/dev/null 2>&1 || true
    fi
    i=0
    while postfix_running >/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
    if pids=$(postfix_running); then
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        sleep 1
        for p in $(postfix_running); do kill -KILL "$p" 2>/dev/null; done
    fi
}

# system_dovecot: the pids of Dovecot masters that are not private test
# instances, i.e. /usr/sbin/dovecot run without "-c FILE" or with
# "-c /etc/dovecot/...". (/proc scan, no pgrep needed.)
system_dovecot() {
    found=""
    for d in /proc/[0-9]*; do
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        [ "$exe" = /usr/sbin/dovecot ] || continue
        conf=$(tr '\000' '\n' <"$d/cmdline" 2>/dev/null | sed -n '/^-c$/{n;p;q;}')
        case "$conf" in
        "" | /etc/dovecot/*) found="$found ${d#/proc/}" ;;
        esac
    done
    [ -n "$found" ] && echo "$found"
}

stop_system_dovecot() {
    pids=$(system_dovecot) || return 0
    say "a system dovecot is running (pid$pids); stopping it"
    # `dovecot stop` signals the master named in /run/dovecot/master.pid.
    timeout 30 /usr/sbin/dovecot stop >/dev/null 2>&1 || true
    i=0
    while system_dovecot >/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
    if pids=$(system_dovecot); then
        for p in $pids; do kill -TERM "$p" 2>/dev/null; done
        sleep 1
        for p in $(system_dovecot); do kill -KILL "$p" 2>/dev/null; done
    fi
}

if [ -z "$need" ]; then
    stop_postfix
    stop_system_dovecot
    if install_aiosmtpd; then
        say "all peers present (swaks curl busybox s-nail smtp-sink python3 openssl dovecot-imapd aiosmtpd)"
        exit 0
    fi
    say "missing: aiosmtpd in $VENV"
    exit 1
fi

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    say "missing:$need; install as root with: apt-get install$need"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
export DEBCONF_NONINTERACTIVE_SEEN=true

policy=/usr/sbin/policy-rc.d
backup=""
restore_policy() {
    if [ -n "$backup" ]; then
        mv -f "$backup" "$policy"
        backup=""
    elif [ -n "${created_policy:-}" ]; then
        rm -f "$policy"
        created_policy=""
    fi
}
trap 'restore_policy' EXIT
trap 'restore_policy; exit 1' INT TERM HUP

case "$need" in
*postfix* | *dovecot*)
    if [ -e "$policy" ]; then
        backup=$(mktemp /usr/sbin/.policy-rc.d.interop.XXXXXX)
        cp -p "$policy" "$backup"
    else
        created_policy=1
    fi
    printf '#!/bin/sh\n# temporary, tests/interop/install-deps.sh: start no daemon\nexit 101\n' >"$policy"
    chmod 0755 "$policy"
    # "No configuration": the package installs, nothing is configured to
    # listen or deliver (we only want /usr/sbin/smtp-sink).
    if command -v debconf-set-selections >/dev/null 2>&1; then
        printf '%s\n' \
            "postfix postfix/main_mailer_type select No configuration" \
            "postfix postfix/mailname string localhost" |
            debconf-set-selections 2>/dev/null || true
    fi
    ;;
esac

say "installing:$need"
apt_opts="-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
ok=0
# Refresh the index first (a fresh machine may have none); retry once.
for attempt in 1 2; do
    timeout 600 apt-get update -q >&2 || say "apt-get update failed (attempt $attempt)"
    # shellcheck disable=SC2086
    if timeout 900 apt-get install $apt_opts $need >&2; then
        ok=1
        break
    fi
    say "apt-get install failed (attempt $attempt)"
    sleep 2
done

restore_policy
stop_postfix
stop_system_dovecot
install_aiosmtpd || say "aiosmtpd could not be installed into $VENV"

missing=$(absent "smtp-sink(postfix)")
aiosmtpd_ok || missing="$missing aiosmtpd($VENV)"
if [ -n "$missing" ] || [ $ok = 0 ]; then
    say "still missing after install:${missing:- (apt-get failed)}"
    exit 1
fi
say "installed:$need"
exit 0
