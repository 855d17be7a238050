#!/bin/sh
# tests/fuzz/run.sh -- `make fuzz FUZZ_SECONDS=N`: builds the cargo-fuzz
# targets in fuzz/, replays every input kept under fuzz/regressions/<target>/,
# then fuzzes each target for FUZZ_SECONDS (default 60), one after another,
# one process each (one core). Prints per target the seconds run (wall
# clock and CPU), the executions and "0 crashes" or the crash file; exits
# 1 on any crash or failed replay.
#
# Installs what it needs when missing: the nightly toolchain (rustup,
# minimal profile) and cargo-fuzz (`cargo install --locked`).
#
#   FUZZ_SECONDS=N        seconds per target (default 60)
#   FUZZ_TARGETS="a b"    a subset (default: every target in fuzz/Cargo.toml)
#   FUZZ_RSS_MB=N         libFuzzer's memory limit per target (default 1024)
#   FUZZ_MAX_LEN=N        longest input libFuzzer makes (default 8192)
#   FUZZ_CONFIG_READBACK=1  the config target also checks that `detad -t`
#                         output reads back the same (off: it does not yet)
#
# The corpus a run grows stays out of git: fuzz/target/corpus/<target>/
# (libFuzzer writes new inputs to the first corpus directory it is given;
# the committed seeds in fuzz/corpus/<target>/ are only read). Crash inputs
# land in fuzz/artifacts/<target>/; fix the bug, then keep the input in
# fuzz/regressions/<target>/ so every later run replays it.
set -u
cd "$(dirname "$0")/../.."

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-1024}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-8192}
# The core is safe Rust (#![forbid(unsafe_code)]): AddressSanitizer would
# halve the executions and find nothing the Rust checks do not.
SANITIZER=none

case $FUZZ_SECONDS in
'' | *[!0-9]*) echo "FUZZ_SECONDS must be a whole number, not '$FUZZ_SECONDS'" >&2; exit 64 ;;
esac

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "== installing the nightly toolchain (cargo-fuzz needs it)"
    rustup toolchain install nightly --profile minimal || exit 1
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked || exit 1
fi

TARGETS=${FUZZ_TARGETS:-$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^detad')}
HOST=$(rustc +nightly -vV | sed -n 's/^host: //p')
BIN_DIR=fuzz/target/$HOST/release

echo "== building the fuzz targets"
cargo +nightly fuzz build --sanitizer $SANITIZER || exit 1

failed=0
mkdir -p fuzz/target/logs

echo "== replaying fuzz/regressions"
for t in $TARGETS; do
    dir=fuzz/regressions/$t
    [ -d "$dir" ] || continue
    # Given files (not a directory), libFuzzer runs each once and stops.
    inputs=$(find "$dir" -type f ! -name 'README*' | sort)
    [ -n "$inputs" ] || continue
    n=$(echo "$inputs" | wc -l)
    # shellcheck disable=SC2086 # one input per word: the names have no spaces
    if "$BIN_DIR/$t" -rss_limit_mb="$FUZZ_RSS_MB" $inputs >"fuzz/target/logs/$t.replay.log" 2>&1; then
        echo "$t: $n regression input(s) pass"
    else
        echo "$t: a regression input fails, see fuzz/target/logs/$t.replay.log:"
        grep -E 'Running:|panicked|ERROR' "fuzz/target/logs/$t.replay.log" | tail -5
        failed=1
    fi
done

dict_for() {
    case $1 in
    command | session | reply_parser) echo fuzz/dict/smtp.dict ;;
    config) echo fuzz/dict/config.dict ;;
    envelope) echo fuzz/dict/envelope.dict ;;
    imap_response) echo fuzz/dict/imap.dict ;;
    *) echo "" ;;
    esac
}

# CPU seconds (user + system) of the children this shell has waited for:
# on a shared machine a target gets less CPU than wall-clock time.
# `times` must run in this shell (not in a $(...) subshell) to see them.
TIMES_FILE=fuzz/target/logs/times
children_cpu() {
    sed -n 2p "$TIMES_FILE" | awk '{
        t = 0
        for (i = 1; i <= 2; i++) { split($i, a, "m"); sub(/s$/, "", a[2]); t += a[1] * 60 + a[2] }
        printf "%d\n", t
    }'
}

echo "== fuzzing each target for ${FUZZ_SECONDS}s"
summary=""
for t in $TARGETS; do
    work=fuzz/target/corpus/$t
    artifacts=fuzz/artifacts/$t
    mkdir -p "$work" "$artifacts" "fuzz/corpus/$t"
    dict=$(dict_for "$t")
    log=fuzz/target/logs/$t.log
    start=$(date +%s)
    times >"$TIMES_FILE"
    cpu_start=$(children_cpu)
    cargo +nightly fuzz run --sanitizer $SANITIZER "$t" "$work" "fuzz/corpus/$t" -- \
        -max_total_time="$FUZZ_SECONDS" -rss_limit_mb="$FUZZ_RSS_MB" \
        -max_len="$FUZZ_MAX_LEN" -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$artifacts/" ${dict:+-dict=$dict} >"$log" 2>&1
    status=$?
    seconds=$(($(date +%s) - start))
    times >"$TIMES_FILE"
    cpu=$(($(children_cpu) - cpu_start))
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    crash=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    if [ $status -eq 0 ] && [ -z "$crash" ]; then
        result="0 crashes"
    else
        result="CRASH ${crash:-(exit $status, see $log)}"
        grep -E 'panicked at|^thread|ERROR: libFuzzer' "$log" | head -3
        failed=1
    fi
    line="$t: ${seconds}s (${cpu} CPU-s), ${runs:-?} executions, $result"
    echo "$line"
    summary="$summary$line
"
done

echo "== summary (FUZZ_SECONDS=$FUZZ_SECONDS, one core per target)"
printf '%s' "$summary"
exit $failed
