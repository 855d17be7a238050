# board/board.mk -- the gateway path (issue 6): cross builds, size report,
# tests on ARM (qemu-user) and with busybox init, and `make install` into a
# firmware root filesystem. Included from the top-level Makefile.
#
#   make arm64                 static aarch64-unknown-linux-musl, linked with rust-lld (ring's C: clang)
#   make arm64-notls           the same without the tls feature (no C), in target/notls/
#   make arm64-small           the smallest: nightly, -Zbuild-std, no tls, no backtraces, in target/small/;
#                              fails over 600 KiB
#   make armv7                 static armv7-unknown-linux-gnueabihf, Debian's gcc-arm-linux-gnueabihf
#   make cross TARGET=<triple> build with `cross` (needs Docker or Podman), see Cross.toml
#   make size                  builds arm64 + arm64-notls, prints every build's size, checks the limits
#   make smoke                 tests/arm/smoke.py against the native release binary
#   make test-arm              the same suite against the aarch64 and armv7 binaries under qemu-user
#   make test-arm-small        the same suite against the arm64-small binary under qemu-user
#   make test-board            tests/board/busybox_init.sh: install + init script under busybox sh
#   make install DESTDIR=<rootfs> [TARGET=<triple> | INSTALL_BIN=<file>] [SENDMAIL_LINKS=0]
#
# Prerequisites are installed when possible (rustup targets; Debian packages
# when run as root with apt-get); NO_INSTALL=1 only reports what is missing.

# Leave the includer's default goal alone, wherever the include line is.
BOARD_SAVED_DEFAULT_GOAL := $(.DEFAULT_GOAL)

BOARD_DIR        := board
BOARD_ENSURE     := sh $(BOARD_DIR)/scripts/ensure.sh
CARGO            ?= cargo
PYTHON3          ?= python3
BOARD_TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)

ARM64_TRIPLE := aarch64-unknown-linux-musl
ARMV7_TRIPLE := armv7-unknown-linux-gnueabihf
NATIVE_BIN   := $(BOARD_TARGET_DIR)/release/detad
ARM64_BIN    := $(BOARD_TARGET_DIR)/$(ARM64_TRIPLE)/release/detad
ARMV7_BIN    := $(BOARD_TARGET_DIR)/$(ARMV7_TRIPLE)/release/detad

# Linkers. rust-lld ships with every rustup toolchain and, with the target's
# self-contained musl crt objects, links aarch64-musl without any C toolchain.
ARM64_LINKER ?= rust-lld
ARMV7_LINKER ?= arm-linux-gnueabihf-gcc
# C compilers and archivers for the target. The only C (and assembly) in the
# build is ring's, rustls' crypto provider (feature "tls", on by default).
# aarch64-musl: clang, which ring drives without any target sysroot (for musl
# targets other than x86_64 it passes -nostdlibinc when the compiler is clang,
# and its C needs only the compiler's own headers); the host's GNU ar indexes
# aarch64 ELF objects through its generic elf64-little support, so no llvm-ar
# is needed. armv7: the same gcc that links, with its binutils' ar.
ARM64_CC ?= clang
ARM64_AR ?= ar
ARMV7_CC ?= arm-linux-gnueabihf-gcc
ARMV7_AR ?= arm-linux-gnueabihf-ar
# 1 = link glibc statically (+crt-static); 0 = dynamic, needs glibc >= 2.34
# and libgcc_s on the board. A RUSTFLAGS from the environment would replace
# the per-target flags, so the recipe appends to it instead.
ARMV7_STATIC ?= 1
ARMV7_RUSTFLAGS := $(if $(filter 1,$(ARMV7_STATIC)),-C target-feature=+crt-static,)

# Size limits of the stripped static aarch64 binaries (bytes), checked by
# `make size`: without tls (make arm64-notls) below SIZE_LIMIT; with tls (make
# arm64, the default features) below SIZE_LIMIT_TLS; make arm64-small at most
# SIZE_LIMIT_SMALL (600 KiB).
SIZE_LIMIT       ?= 1048576
SIZE_LIMIT_TLS   ?= 2097152
SIZE_LIMIT_SMALL ?= 614400

# `make arm64-notls`: stable, --no-default-features, its own target directory
# (the same path under target/ would be overwritten by `make arm64`).
ARM64_NOTLS_DIR := $(BOARD_TARGET_DIR)/notls
ARM64_NOTLS_BIN := $(ARM64_NOTLS_DIR)/$(ARM64_TRIPLE)/release/detad

# `make arm64-small`: std rebuilt from source with the release profile
# (opt-level z, LTO) on a pinned nightly (-Zbuild-std is nightly-only), no tls,
# and what a firmware image does not need:
#  - std without its backtrace feature: no symbolizer (gimli, addr2line,
#    miniz_oxide, rustc-demangle); a panic still prints its message, then aborts;
#  - std's optimize_for_size feature (smaller algorithms in core and alloc);
#  - no unwind tables (-C force-unwind-tables=no): with panic=abort and no
#    backtraces nothing reads .eh_frame;
#  - trim-paths: source paths in panic locations as /rustc/<commit>/library/...
#    and <crate>-<version>/src/... instead of this machine's absolute paths;
#  - -Zlocation-detail=file: a panic names the source file, not its line and
#    column ("panicked at src/server/conn.rs:0:0:"); "none" saves ~15 KB more
#    ("<redacted>:0:0"), "file,line,column" keeps them all (~11 KB more).
SMALL_TOOLCHAIN       ?= nightly-2026-10-30
SMALL_CARGO           ?= cargo +$(SMALL_TOOLCHAIN)
SMALL_BUILD_STD       ?= std,panic_abort
SMALL_STD_FEATURES    ?= optimize_for_size
SMALL_LOCATION_DETAIL ?= file
SMALL_RUSTFLAGS       ?= -C force-unwind-tables=no -Zlocation-detail=$(SMALL_LOCATION_DETAIL)
ARM64_SMALL_DIR       := $(BOARD_TARGET_DIR)/small
ARM64_SMALL_BIN       := $(ARM64_SMALL_DIR)/$(ARM64_TRIPLE)/release/detad

# `make cross TARGET=...`: tier-3 targets have no prebuilt std; they need
# nightly and -Zbuild-std (enabled per target in Cross.toml).
CROSS           ?= cross
CROSS_TIER3     := mips-unknown-linux-musl mipsel-unknown-linux-musl
CROSS_TOOLCHAIN ?= nightly

# Install layout (paths inside the target root filesystem).
TARGET       ?=
INSTALL_BIN  ?= $(if $(TARGET),$(BOARD_TARGET_DIR)/$(TARGET)/release/detad,$(NATIVE_BIN))
DESTDIR      ?=
SBINDIR      ?= /usr/sbin
BINDIR       ?= /usr/bin
SYSCONFDIR   ?= /etc
SPOOL_DIR    ?= /var/spool/detad
MAILDIR_ROOT ?= /var/spool/maildir
INSTALL      ?= install
# 1 = install the links sendmail (SBINDIR) and mailq (BINDIR) to detad,
# replacing what is there (busybox's sendmail applet, another MTA's).
SENDMAIL_LINKS ?= 1
# mailq's link, relative when BINDIR and SBINDIR are siblings (/usr/bin,
# /usr/sbin), so that it works inside DESTDIR as well as on the board.
MAILQ_TARGET := $(if $(filter $(dir $(BINDIR)),$(dir $(SBINDIR))),../$(notdir $(SBINDIR))/detad,$(SBINDIR)/detad)

.PHONY: arm64 arm64-notls arm64-small arm64-small-build armv7 cross size smoke test-arm test-arm-small test-board install board-help

board-help:
	@sed -n '4,19s/^# \{0,1\}//p' $(BOARD_DIR)/board.mk

# $(call arm64_check_lld,RUSTC): rust-lld must be in that toolchain's sysroot.
define arm64_check_lld
@sysroot=$$($(1) --print sysroot); \
	if [ "$(ARM64_LINKER)" = rust-lld ] && ! ls "$$sysroot"/lib/rustlib/*/bin/rust-lld >/dev/null 2>&1; then \
		echo "make $@: rust-lld not found in $$sysroot (a rustup toolchain ships it);" \
		     "install Rust with rustup, or use ARM64_LINKER=ld.lld (Debian package lld)" >&2; exit 1; \
	fi
endef

ARM64_ENV = CC_aarch64_unknown_linux_musl=$(ARM64_CC) AR_aarch64_unknown_linux_musl=$(ARM64_AR) \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=$(ARM64_LINKER)

arm64:
	@$(BOARD_ENSURE) target $(ARM64_TRIPLE)
	$(call arm64_check_lld,rustc)
	@$(BOARD_ENSURE) cmd $(ARM64_CC) clang
	@$(BOARD_ENSURE) cmd $(ARM64_AR) binutils
	$(ARM64_ENV) $(CARGO) build --release --target $(ARM64_TRIPLE)
	@ls -l $(ARM64_BIN)

# Without tls there is no C in the build: no clang needed.
arm64-notls:
	@$(BOARD_ENSURE) target $(ARM64_TRIPLE)
	$(call arm64_check_lld,rustc)
	CARGO_TARGET_DIR=$(ARM64_NOTLS_DIR) $(ARM64_ENV) \
		$(CARGO) build --release --target $(ARM64_TRIPLE) --no-default-features
	@ls -l $(ARM64_NOTLS_BIN)

# The nightly's own std for the target is still needed: its self-contained
# musl (crt objects, libc.a) is linked, -Zbuild-std builds only the Rust part.
# The RUSTFLAGS reach std too (it is built like a dependency); one from the
# environment is kept and SMALL_RUSTFLAGS appended. `make arm64-small` fails
# over SIZE_LIMIT_SMALL; test-arm-small tests the binary whatever its size.
arm64-small: arm64-small-build
	@sh $(BOARD_DIR)/scripts/size.sh "aarch64 small (nightly)" $(ARM64_SMALL_BIN) "<=$(SIZE_LIMIT_SMALL)" "make arm64-small"

arm64-small-build:
	@$(BOARD_ENSURE) toolchain $(SMALL_TOOLCHAIN) $(ARM64_TRIPLE)
	$(call arm64_check_lld,rustc +$(SMALL_TOOLCHAIN))
	CARGO_TARGET_DIR=$(ARM64_SMALL_DIR) CARGO_PROFILE_RELEASE_TRIM_PATHS=all $(ARM64_ENV) \
	$(if $(RUSTFLAGS),RUSTFLAGS="$(RUSTFLAGS) $(SMALL_RUSTFLAGS)",CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(SMALL_RUSTFLAGS)") \
		$(SMALL_CARGO) build --release --target $(ARM64_TRIPLE) --no-default-features \
		-Zbuild-std=$(SMALL_BUILD_STD) -Zbuild-std-features=$(SMALL_STD_FEATURES)

armv7:
	@$(BOARD_ENSURE) target $(ARMV7_TRIPLE)
	@$(BOARD_ENSURE) cmd $(ARMV7_LINKER) gcc-arm-linux-gnueabihf libc6-dev-armhf-cross
	@$(BOARD_ENSURE) file /usr/arm-linux-gnueabihf/lib/libc.a libc6-dev-armhf-cross
	@$(BOARD_ENSURE) cmd $(ARMV7_CC) gcc-arm-linux-gnueabihf
	@$(BOARD_ENSURE) cmd $(ARMV7_AR) binutils-arm-linux-gnueabihf
	CC_armv7_unknown_linux_gnueabihf=$(ARMV7_CC) AR_armv7_unknown_linux_gnueabihf=$(ARMV7_AR) \
	CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=$(ARMV7_LINKER) \
	$(if $(RUSTFLAGS),RUSTFLAGS="$(RUSTFLAGS) $(ARMV7_RUSTFLAGS)",CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUSTFLAGS="$(ARMV7_RUSTFLAGS)") \
		$(CARGO) build --release --target $(ARMV7_TRIPLE)
	@ls -l $(ARMV7_BIN)

cross:
	@if [ -z "$(TARGET)" ]; then \
		echo "usage: make cross TARGET=<triple>, e.g. armv7-unknown-linux-musleabihf or mipsel-unknown-linux-musl" >&2; \
		exit 64; fi
	@if ! command -v $(CROSS) >/dev/null 2>&1; then \
		echo "make cross: '$(CROSS)' not found. Install it with" >&2; \
		echo "    cargo install cross --git https://github.com/cross-rs/cross" >&2; \
		echo "and have Docker or Podman running. Without Docker: make arm64 / make armv7." >&2; \
		exit 1; fi
	@if ! command -v docker >/dev/null 2>&1 && ! command -v podman >/dev/null 2>&1; then \
		echo "make cross: cross needs a container engine (docker or podman); none found." >&2; \
		echo "Without one, use make arm64 (aarch64 musl) or make armv7 (armv7 gnueabihf)." >&2; \
		exit 1; fi
	@case " $(CROSS_TIER3) " in \
	*" $(TARGET) "*) \
		echo "$(TARGET) is a tier-3 target: $(CROSS) +$(CROSS_TOOLCHAIN) build with build-std (Cross.toml)"; \
		set -x; $(CROSS) +$(CROSS_TOOLCHAIN) build --release --target $(TARGET) ;; \
	*)	set -x; $(CROSS) build --release --target $(TARGET) ;; \
	esac
	@ls -l $(BOARD_TARGET_DIR)/$(TARGET)/release/detad

# Builds the two stable aarch64 builds it checks; the others are reported when
# they have been built (make armv7, make release, make arm64-small).
size: arm64 arm64-notls
	@sh $(BOARD_DIR)/scripts/size.sh \
		"aarch64 tls (default)" $(ARM64_BIN) "<$(SIZE_LIMIT_TLS)" "make arm64" \
		"aarch64 no tls" $(ARM64_NOTLS_BIN) "<$(SIZE_LIMIT)" "make arm64-notls" \
		"aarch64 small (nightly)" $(ARM64_SMALL_BIN) "<=$(SIZE_LIMIT_SMALL)" "make arm64-small" \
		"armv7 tls (default)" $(ARMV7_BIN) - "make armv7" \
		"x86_64 native (release)" $(NATIVE_BIN) - "make release"

smoke:
	$(CARGO) build --release
	$(PYTHON3) tests/arm/smoke.py $(NATIVE_BIN)

# The pipe routes make detad exec itself (/proc/self/exe): the kernel must hand
# ARM binaries to qemu. tests/arm/binfmt.py uses the host's binfmt_misc
# handlers when present (Debian: qemu-user-binfmt), otherwise a private
# binfmt_misc in a user namespace (root, Linux >= 6.7); nothing outside changes.
QEMU_BINFMT := $(PYTHON3) tests/arm/binfmt.py

test-arm: arm64 armv7
	@$(BOARD_ENSURE) cmd qemu-aarch64 qemu-user
	@$(BOARD_ENSURE) cmd qemu-arm qemu-user
	$(QEMU_BINFMT) aarch64 $(PYTHON3) tests/arm/smoke.py $(ARM64_BIN) --qemu qemu-aarch64
	QEMU_LD_PREFIX=/usr/arm-linux-gnueabihf \
	$(QEMU_BINFMT) arm $(PYTHON3) tests/arm/smoke.py $(ARMV7_BIN) --qemu "qemu-arm -L /usr/arm-linux-gnueabihf"

test-arm-small: arm64-small-build
	@$(BOARD_ENSURE) cmd qemu-aarch64 qemu-user
	$(QEMU_BINFMT) aarch64 $(PYTHON3) tests/arm/smoke.py $(ARM64_SMALL_BIN) --qemu qemu-aarch64

test-board:
	sh tests/board/busybox_init.sh

install:
	@if [ -z "$(DESTDIR)" ]; then \
		echo "make install: set DESTDIR to the target root filesystem, e.g. make install DESTDIR=/path/to/rootfs TARGET=$(ARM64_TRIPLE)" >&2; \
		exit 64; fi
	@if [ ! -f "$(INSTALL_BIN)" ]; then \
		echo "make install: $(INSTALL_BIN) not built; run make arm64 / make armv7 / cargo build --release first (or set INSTALL_BIN=<file>)" >&2; \
		exit 1; fi
	@# Parents with mkdir -p, not install -d -m: that would also chmod existing
	@# directories, and through a symlink such as Buildroot's var/spool -> ../tmp.
	umask 022; mkdir -p "$(DESTDIR)$(SBINDIR)" "$(DESTDIR)$(SYSCONFDIR)/init.d" \
		"$(DESTDIR)$(dir $(SPOOL_DIR))" "$(DESTDIR)$(dir $(MAILDIR_ROOT))"
	$(INSTALL) -m 0755 "$(INSTALL_BIN)" "$(DESTDIR)$(SBINDIR)/detad"
	@# sendmail and mailq: detad answers to those names (see README, sendmail).
	@if [ "$(SENDMAIL_LINKS)" = 1 ]; then \
		mkdir -p "$(DESTDIR)$(BINDIR)"; \
		for pair in "$(SBINDIR)/sendmail detad" "$(BINDIR)/mailq $(MAILQ_TARGET)"; do \
			set -- $$pair; path="$(DESTDIR)$$1"; \
			if { [ -e "$$path" ] || [ -L "$$path" ]; } && [ "$$(readlink "$$path")" != "$$2" ]; then \
				echo "replacing $$1 ($$(readlink "$$path" || echo a file)) with a link to detad"; \
			fi; \
			echo "ln -sfn $$2 $$path"; ln -sfn "$$2" "$$path" || exit 1; \
		done; \
	fi
	$(INSTALL) -m 0755 $(BOARD_DIR)/etc/init.d/S50detad "$(DESTDIR)$(SYSCONFDIR)/init.d/S50detad"
	@conf="$(DESTDIR)$(SYSCONFDIR)/detad.conf"; \
	if [ -f "$$conf" ] && ! cmp -s $(BOARD_DIR)/etc/detad.conf "$$conf"; then \
		echo "keeping existing $$conf; new default installed as $$conf.new"; \
		$(INSTALL) -m 0644 $(BOARD_DIR)/etc/detad.conf "$$conf.new"; \
	else \
		echo "$(INSTALL) -m 0644 $(BOARD_DIR)/etc/detad.conf $$conf"; \
		$(INSTALL) -m 0644 $(BOARD_DIR)/etc/detad.conf "$$conf"; \
	fi
	$(INSTALL) -d -m 0700 "$(DESTDIR)$(SPOOL_DIR)" "$(DESTDIR)$(MAILDIR_ROOT)"
	@sh $(BOARD_DIR)/scripts/add-user.sh "$(DESTDIR)" detad "$(SPOOL_DIR)"
	@echo "installed detad into $(DESTDIR) ($(INSTALL_BIN))"

ifeq ($(firstword $(MAKEFILE_LIST)),$(lastword $(MAKEFILE_LIST)))
.DEFAULT_GOAL := board-help
else
.DEFAULT_GOAL := $(BOARD_SAVED_DEFAULT_GOAL)
endif
