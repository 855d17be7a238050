#!/bin/sh
# bench.sh -- detad throughput and memory on loopback, with Postfix's
# smtp-source as the load and smtp-sink (which stores nothing) as the
# protocol ceiling. Rounds are interleaved (sink, detad fsync=yes, detad
# fsync=no, sink, ...) because this machine's speed drifts; the report gives
# each profile's median and its ratio to the sink's median from the same run.
#
#   sh tests/bench/bench.sh [ROUNDS] [MESSAGES] [SESSIONS] [SIZE]
#
# Needs smtp-source/smtp-sink (Debian package postfix: see
# tests/interop/install-deps.sh). Listens on 127.0.0.1 only; every run is
# bounded by `timeout`; everything it starts is stopped on exit.
set -eu
ROUNDS=${1:-3}
MESSAGES=${2:-2000}
SESSIONS=${3:-20}
SIZE=${4:-4096}
BIN=${DETAD_BIN:-target/release/detad}
command -v smtp-source >/dev/null || { echo "bench: smtp-source missing (apt-get install postfix; see tests/interop/install-deps.sh)"; exit 69; }
[ -x "$BIN" ] || { echo "bench: $BIN missing (make release)"; exit 66; }

WORK=$(mktemp -d /tmp/detad-bench.XXXXXX)
PIDS=""
cleanup() { for p in $PIDS; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT INT TERM

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now() { python3 -c 'import time; print(time.monotonic())'; }

start_detad() { # name fsync -> sets PORT, PID
    name=$1; PORT=$(free_port)
    mkdir -p "$WORK/$name"
    cat > "$WORK/$name/conf" <<CONF
listen = 127.0.0.1:$PORT
spool = $WORK/$name/spool
fsync = $2
sessions = $SESSIONS
workers = 2
spool_max_bytes = 0
route = * maildir:$WORK/$name/maildir
CONF
    RUST_LOG=warn "$BIN" -c "$WORK/$name/conf" 2>"$WORK/$name/log" &
    PID=$!; PIDS="$PIDS $PID"
    wait_port "$PORT"
}
start_sink() {
    PORT=$(free_port)
    smtp-sink -u root -c "127.0.0.1:$PORT" 256 >/dev/null 2>&1 &
    PID=$!; PIDS="$PIDS $PID"
    wait_port "$PORT"
}
wait_port() {
    i=0
    until python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$1),0.2)" 2>/dev/null; do
        i=$((i+1)); [ $i -lt 100 ] || { echo "bench: nothing listens on $1"; exit 1; }; sleep 0.05
    done
}
queue_empty() { [ -z "$(ls "$1/queue" 2>/dev/null)" ]; }

start_sink;  SINK_PORT=$PORT
start_detad sync yes; SYNC_PORT=$PORT; SYNC_PID=$PID
start_detad nosync no; NOSYNC_PORT=$PORT; NOSYNC_PID=$PID

run() { # profile port -> prints msgs/s; for detad also e2e msgs/s (until the queue is empty)
    t0=$(now)
    timeout 300 smtp-source -s "$SESSIONS" -m "$MESSAGES" -l "$SIZE" -f bench@example.com -t bob@example.net "127.0.0.1:$2" >/dev/null
    t1=$(now)
    if [ "$1" != sink ]; then
        i=0; until queue_empty "$WORK/$1/spool" || [ $i -ge 6000 ]; do sleep 0.05; i=$((i+1)); done
    fi
    t2=$(now)
    python3 -c "print(f'{$MESSAGES/($t1-$t0):.0f} {$MESSAGES/($t2-$t0):.0f}')"
}

echo "bench: $ROUNDS rounds x $MESSAGES messages of $SIZE bytes over $SESSIONS sessions (smtp-source)"
: > "$WORK/results"
r=1
while [ $r -le "$ROUNDS" ]; do
    for p in sink:$SINK_PORT sync:$SYNC_PORT nosync:$NOSYNC_PORT; do
        name=${p%%:*}; port=${p#*:}
        set -- $(run "$name" "$port")
        echo "$name $r $1 $2" >> "$WORK/results"
        printf '  round %d %-7s accepted %6s msg/s  end-to-end %6s msg/s\n' "$r" "$name" "$1" "$2"
    done
    r=$((r+1))
done
hwm() { awk '/VmHWM/ {print $2}' "/proc/$1/status"; }
python3 - "$WORK/results" "$(hwm "$SYNC_PID")" "$(hwm "$NOSYNC_PID")" "$(stat -c %s "$BIN")" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
med = {}
for name in ("sink", "sync", "nosync"):
    acc = [float(r[2]) for r in rows if r[0] == name]
    e2e = [float(r[3]) for r in rows if r[0] == name]
    med[name] = (statistics.median(acc), statistics.median(e2e))
label = {"sink": "smtp-sink (no storage)", "sync": "detad fsync=yes", "nosync": "detad fsync=no"}
print("profile                  accepted msg/s (median)  ratio to sink  end-to-end msg/s (median)")
for name in ("sink", "sync", "nosync"):
    a, e = med[name]
    print(f"{label[name]:<24} {a:>12.0f}             {a / med['sink'][0]:>6.2f}        {e:>10.0f}")
print(f"detad peak RSS (VmHWM): fsync=yes {sys.argv[2]} KiB, fsync=no {sys.argv[3]} KiB; binary {int(sys.argv[4]) // 1024} KiB")
PY
