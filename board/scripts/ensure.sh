#!/bin/sh
# Make sure a build/test prerequisite is present, installing it when we can.
#
#   ensure.sh target TRIPLE            rustup target (rustup target add TRIPLE)
#   ensure.sh toolchain NAME TRIPLE    rustup toolchain NAME (e.g. a pinned nightly) with
#                                      rust-src (for -Zbuild-std) and TRIPLE's std
#   ensure.sh cmd COMMAND DEBPKG...    a program; apt-get install DEBPKG... if missing
#   ensure.sh file PATH DEBPKG...      a file (e.g. a static libc); apt-get install if missing
#
# Installs only when it can do so without asking: rustup on PATH for targets,
# root + apt-get for Debian packages. Set NO_INSTALL=1 to never install and
# just report what is missing. Exit 0 when present (or installed), 1 otherwise,
# always with one line saying exactly what is missing and how to get it.
set -eu

me=ensure.sh
die() { echo "$me: $*" >&2; exit 1; }

apt_install() {
    # $@ = Debian packages
    if [ "${NO_INSTALL:-0}" = 1 ]; then
        die "missing; install with: apt-get install $* (NO_INSTALL=1 set, not installing)"
    fi
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        die "missing; install with: sudo apt-get install $* (Debian/Ubuntu package names)"
    fi
    echo "$me: installing Debian packages: $*" >&2
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-get install -y -q --no-install-recommends "$@" >&2; then
        # A stale package index is the usual cause; refresh once and retry.
        apt-get update -q >&2 || true
        apt-get install -y -q --no-install-recommends "$@" >&2 ||
            die "apt-get install $* failed"
    fi
}

[ $# -ge 2 ] || die "usage: ensure.sh target TRIPLE | toolchain NAME TRIPLE | cmd COMMAND DEBPKG... | file PATH DEBPKG..."
kind=$1; what=$2; shift 2

case $kind in
target)
    command -v rustc >/dev/null 2>&1 || die "rustc not found; install Rust with rustup (https://rustup.rs)"
    # The std library for TRIPLE is present when rustc's sysroot has it.
    if [ -d "$(rustc --print sysroot)/lib/rustlib/$what/lib" ]; then
        exit 0
    fi
    if ! command -v rustup >/dev/null 2>&1; then
        die "Rust target $what is not installed and rustup is not available; install the std library for $what"
    fi
    [ "${NO_INSTALL:-0}" = 1 ] && die "missing Rust target; run: rustup target add $what"
    echo "$me: rustup target add $what" >&2
    rustup target add "$what" >&2 || die "rustup target add $what failed"
    ;;
toolchain)
    [ $# -ge 1 ] || die "usage: ensure.sh toolchain NAME TRIPLE"
    triple=$1
    command -v rustup >/dev/null 2>&1 ||
        die "toolchain $what needs rustup (https://rustup.rs): rustup toolchain install $what --profile minimal --component rust-src --target $triple"
    # Present when its rustc runs and its sysroot has the library sources
    # (rust-src) and the target's std (for musl: the self-contained crt
    # objects and libc.a, which -Zbuild-std does not build).
    if sysroot=$(rustc "+$what" --print sysroot 2>/dev/null) &&
        [ -d "$sysroot/lib/rustlib/src/rust/library/std" ] &&
        [ -d "$sysroot/lib/rustlib/$triple/lib" ]; then
        exit 0
    fi
    cmd="rustup toolchain install $what --profile minimal --component rust-src --target $triple"
    [ "${NO_INSTALL:-0}" = 1 ] && die "missing Rust toolchain $what (with rust-src, $triple); run: $cmd"
    echo "$me: $cmd" >&2
    $cmd >&2 || die "$cmd failed"
    ;;
cmd)
    command -v "$what" >/dev/null 2>&1 && exit 0
    [ $# -ge 1 ] || die "$what not found on PATH"
    echo "$me: $what not found on PATH" >&2
    apt_install "$@"
    command -v "$what" >/dev/null 2>&1 || die "$what still not on PATH after installing $*"
    ;;
file)
    [ -e "$what" ] && exit 0
    [ $# -ge 1 ] || die "$what does not exist"
    echo "$me: $what does not exist" >&2
    apt_install "$@"
    [ -e "$what" ] || die "$what still missing after installing $*"
    ;;
*)
    die "unknown kind '$kind'"
    ;;
esac
