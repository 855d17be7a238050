#!/bin/sh
# bench.sh -- `make bench`: detad side by side with Postfix, in one run.
#
#   sh tests/bench/bench.sh [ROUNDS] [MESSAGES] [SESSIONS] [SIZE]     (default 3 2000 20 4096)
#   make bench BENCH_ARGS="1 300 20 4096"                             (or: make bench-quick)
#
# Servers, one instance each for the whole run, all on 127.0.0.1 and ports
# chosen free at run time:
#   smtp-sink       alone: the protocol ceiling (stores nothing)
#   Postfix         a private instance: config_directory, queue_directory,
#                   data_directory and maillog_file under the work directory,
#                   smtpd on 127.0.0.1:<port>, relayhost = [127.0.0.1]:<an
#                   smtp-sink>, no DNS, no local delivery; stopped with
#                   `postfix -c DIR stop` at the end. /etc/postfix is never used.
#   detad-relay     detad, route = * smtp:<an smtp-sink>
#   detad-maildir   detad, route = * maildir:<work dir>
# Profiles (Postfix's smtp-source as the load):
#   many    -s SESSIONS      one message per connection
#   single  -s 1             one session, one message per connection
#   reuse   -s SESSIONS -d   every session reuses its connection
# Rounds are interleaved (every server once per profile per round, the order
# rotated each round) because this machine's speed drifts; the report gives
# medians and ratios to Postfix and to smtp-sink from this run. Per server and
# profile: accepted msg/s, end-to-end msg/s (until the queue is empty and
# everything arrived), CPU s per 1000 messages (all the server's processes, in
# a cgroup v2 of its own; /proc process tree when there is none), peak PSS,
# fsyncs per message (separate untimed run under strace -f -c), KiB written
# per message. Extras: PSS per idle connection, RDLV vs plain with a quick
# route, DETA -> close latency (p99). See README.md ("Benchmark").
#
# Environment (all optional):
#   BENCH_PROFILES="many single reuse"        profiles to run
#   BENCH_SERVERS="sink postfix detad-relay detad-maildir"
#   BENCH_EXTRAS="idle rdlv deta"             extras ("" for none)
#   BENCH_FSYNC=yes                           detad's fsync setting
#   BENCH_WORKERS=2                           detad's workers
#   BENCH_COUNT_MESSAGES=min(MESSAGES,500)    messages of each strace counting run (0: none)
#   BENCH_RDLV_MESSAGES=MESSAGES              messages of each RDLV/plain run
#   BENCH_DETA="200 10"                       DETA trials and parallel sessions
#   BENCH_DETA_SLEEP=2                        seconds the DETA pipe route takes (> 1)
#   BENCH_IDLE=SESSIONS                       idle connections (detad: at most its sessions)
#   BENCH_PSS_INTERVAL=0.05                   PSS sampling interval (s)
#   BENCH_TIMEOUT=300 BENCH_DRAIN_TIMEOUT=300 per load run, per drain (s)
#   BENCH_MAX_SECS=5400                       budget for the whole run; later runs are skipped
#   BENCH_DIR=/tmp                            where the work directory (and so the spools) lives
#   BENCH_CGROUP=0                            do not use cgroup v2 (the /proc process-tree fallback)
#   BENCH_RUST_LOG=info                       detad's RUST_LOG (Postfix logs every message too)
#   BENCH_OUT=target/bench/report.md          the report (every run also in report.tsv)
#   DETAD_BIN=target/release/detad  KEEP=1 (keep the work directory)  NO_INSTALL=1
#
# Postfix (smtp-source, smtp-sink, the private instance) is installed as
# `make interop` installs it: tests/interop/install-deps.sh (as root; no
# daemon is started on port 25). strace is installed with apt-get if missing.
# Exit 0 when every run succeeded.
set -eu
cd "$(dirname "$0")/../.."
PY=${PYTHON3:-python3}
export PYTHONDONTWRITEBYTECODE=1
BIN=${DETAD_BIN:-target/release/detad}

command -v "$PY" >/dev/null || { echo "bench: python3 missing"; exit 69; }
[ -x "$BIN" ] || { echo "bench: $BIN missing (make release)"; exit 66; }

if [ ! -x /usr/sbin/smtp-source ] || [ ! -x /usr/sbin/smtp-sink ] || [ ! -x /usr/sbin/postfix ]; then
    if [ "${NO_INSTALL:-0}" = 1 ] || [ "$(id -u)" != 0 ]; then
        echo "bench: Postfix's smtp-source/smtp-sink/postfix missing: as root, sh tests/interop/install-deps.sh"
        exit 69
    fi
    sh tests/interop/install-deps.sh || { echo "bench: installing Postfix failed"; exit 69; }
fi
if ! command -v strace >/dev/null 2>&1 && [ "${NO_INSTALL:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
    && [ "${BENCH_COUNT_MESSAGES:-1}" != 0 ]; then
    echo "bench: installing strace (for the fsync counts)"
    DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends strace >/dev/null \
        || { timeout 600 apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive timeout 600 \
            apt-get install -y -q --no-install-recommends strace >/dev/null; } \
        || echo "bench: strace could not be installed: no fsync counts"
fi

DETAD_BIN=$BIN exec "$PY" tests/bench/harness.py "$@"
