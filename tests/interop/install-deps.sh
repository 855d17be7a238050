#!/bin/sh
# tests/interop/install-deps.sh -- install the real peers of `make interop`
# on Debian (as root): swaks, curl, busybox, s-nail, and Postfix (for
# smtp-sink).
#
# - Skips everything that is already present (no apt-get at all then).
# - Non-interactive (DEBIAN_FRONTEND=noninteractive, debconf answers preset).
# - Postfix conflicts with other MTAs and its maintainer scripts would start a
#   daemon on port 25: while installing, /usr/sbin/policy-rc.d exits 101 so
#   invoke-rc.d starts nothing. A policy-rc.d that was there before is put
#   back afterwards; one we created is removed.
# - Afterwards no postfix master process may be running (stopped if one is).
#
# Exit 0 when every peer is there, 1 otherwise (with what is missing).
set -u

me=install-deps.sh
say() { echo "$me: $*" >&2; }

# absent NAME: the peers not on this machine, each with a leading space;
# a missing smtp-sink is named NAME.
absent() {
    m=""
    for tool in swaks curl busybox s-nail; do
        command -v "$tool" >/dev/null 2>&1 || m="$m $tool"
    done
    [ -x /usr/sbin/smtp-sink ] || m="$m $1"
    command -v python3 >/dev/null 2>&1 || m="$m python3"
    echo "$m"
}

need=$(absent postfix)

postfix_running() {
    # A postfix master process (the daemon), by /proc scan (no pgrep needed).
    for d in /proc/[0-9]*; do
        exe=$(readlink "$d/exe" 2>/dev/null) || continue
        case "$exe" in
        # Debian: /usr/lib/postfix/sbin/master
        */postfix/sbin/master | */postfix/master) echo "${d#/proc/}"; return 0 ;;
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

if [ -z "$need" ]; then
    say "all peers present (swaks curl busybox s-nail smtp-sink python3)"
    stop_postfix
    exit 0
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
*postfix*)
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

missing=$(absent "smtp-sink(postfix)")
if [ -n "$missing" ] || [ $ok = 0 ]; then
    say "still missing after install:${missing:- (apt-get failed)}"
    exit 1
fi
say "installed:$need"
exit 0
