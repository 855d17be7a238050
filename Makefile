# detad — the commands. `make run` and `make test` are all a fresh Debian
# machine with Rust needs; `make interop` installs its peers (as root).

CARGO   ?= cargo
PYTHON3 ?= python3
RUN_DIR ?= var
PORT    ?= 2525

.PHONY: all build release run test check check-selftest fmt clippy interop bench bench-quick fuzz clean

all: build

# Debug build of the library and the binary.
build:
	$(CARGO) build

# The size-optimised binary (LTO, panic=abort, stripped).
release:
	$(CARGO) build --release

# detad in the foreground on 127.0.0.1:$(PORT) (make run PORT=2526 for
# another); spool in ./var/spool, mail in ./var/maildir/<user>/new. The
# binary is target/release/detad; `target/release/detad -s var/spool queue`
# lists that spool.
run:
	mkdir -p $(RUN_DIR)
	RUST_LOG=$${RUST_LOG:-info} $(CARGO) run --release -- -l 127.0.0.1:$(PORT) -s $(RUN_DIR)/spool

# Unit tests, integration tests over loopback sockets, the lint gates, and
# proof that each structural check can fail (a planted violation is caught);
# all of it also for the build without TLS (the smallest boards).
test: check check-selftest
	$(CARGO) test
	$(CARGO) test --no-default-features

# Formatting, lints, the fuzz targets still compile against the library,
# the sans-IO rule for the protocol core, the layering of the modules, and
# the size of files and functions.
check: fmt clippy
	$(CARGO) check --quiet --manifest-path fuzz/Cargo.toml --bins
	sh tests/check/sans_io.sh
	sh tests/check/layers.sh
	$(PYTHON3) tests/check/code_size.py

check-selftest:
	sh tests/check/sans_io.sh --plant
	sh tests/check/layers.sh --plant
	$(PYTHON3) tests/check/code_size.py --plant

fmt:
	$(CARGO) fmt --all -- --check

clippy:
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) clippy --no-default-features --all-targets -- -D warnings

# Real peers: Python smtplib, swaks, curl, Postfix's smtp-sink, busybox.
interop: release
	sh tests/interop/run.sh

# detad side by side with a private Postfix instance and smtp-sink (the
# ceiling), smtp-source as the load: three profiles, interleaved rounds,
# medians and ratios from one run; extras (BENCH_EXTRAS="idle rdlv deta
# tls"): idle memory, RDLV, DETA latency, and the cost of TLS (handshakes,
# STARTTLS/AUTH/implicit TLS vs plaintext, idle TLS memory; throwaway
# certificates made with openssl); report: report.md in target/bench/.
# BENCH_ARGS="ROUNDS MESSAGES SESSIONS SIZE" (default 3 2000 20 4096); more
# options in tests/bench/bench.sh. Installs Postfix like `make interop` (root).
bench: bench-bin
	DETAD_BIN=$${DETAD_BIN:-$(BENCH_BIN)} sh tests/bench/bench.sh $(BENCH_ARGS)

# The same, short: 1 round of 300 messages, 60 DETA trials, the TLS extra
# with 300 messages per run (a few minutes).
bench-quick: bench-bin
	DETAD_BIN=$${DETAD_BIN:-$(BENCH_BIN)} BENCH_DETA="$${BENCH_DETA:-60 6}" \
		sh tests/bench/bench.sh $(or $(BENCH_ARGS),1 300 20 4096)

# The bench measures detad as it ships on the boards: a static musl binary
# (its allocator behaves unlike glibc's per-thread arenas, which hold more
# memory under 20 threads), here for x86_64 (ring's C compiled by gcc).
BENCH_TRIPLE ?= x86_64-unknown-linux-musl
BENCH_BIN    ?= target/$(BENCH_TRIPLE)/release/detad
bench-bin:
	@sh board/scripts/ensure.sh target $(BENCH_TRIPLE)
	CC_x86_64_unknown_linux_musl=$${CC_x86_64_unknown_linux_musl:-gcc} \
		$(CARGO) build --release --target $(BENCH_TRIPLE)

# cargo-fuzz targets in fuzz/ (installs nightly and cargo-fuzz if missing):
# replays fuzz/regressions, then runs each target for FUZZ_SECONDS.
FUZZ_SECONDS ?= 60
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) sh tests/fuzz/run.sh

clean:
	$(CARGO) clean
	rm -rf $(RUN_DIR)

include board/board.mk
