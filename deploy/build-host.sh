#!/usr/bin/env bash
# Builds a static wasmfn host as the image runs it and prints the binary's path.
#
#   deploy/build-host.sh compiling|runtime-only [--lto]
#
# `compiling` has the compiler (it stages and precompiles at image build time);
# `runtime-only` is the host the image runs: without the compiler (the `compiler` feature
# off), it only loads what was compiled, and is a third smaller, with fewer pages to map at
# a cold start. --lto links with thin LTO and one codegen unit: 9% smaller and 1 MiB less
# resident (benches/README.md), for a build several minutes longer.
#
# Used by deploy/build-image.sh and by the `compare` bench, so both run the same binary.
# Needs the x86_64-unknown-linux-musl Rust target (added with rustup if missing) and a musl
# C compiler for wasmtime's small C helper (Debian/Ubuntu: apt-get install musl-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

kind=${1:-}
features=()
case "$kind" in
  compiling) ;;
  runtime-only) features=(--no-default-features) ;;
  *) echo "usage: $0 compiling|runtime-only [--lto]" >&2; exit 2 ;;
esac
lto=()
case "${2:-}" in
  "") ;;
  --lto) lto=(env CARGO_PROFILE_IMAGE_LTO=thin CARGO_PROFILE_IMAGE_CODEGEN_UNITS=1) ;;
  *) echo "usage: $0 compiling|runtime-only [--lto]" >&2; exit 2 ;;
esac

target=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target" >&2
fi

# cc-rs looks for x86_64-linux-musl-gcc; Debian's musl-tools names it musl-gcc.
if ! command -v x86_64-linux-musl-gcc >/dev/null; then
  if command -v musl-gcc >/dev/null; then
    export CC_x86_64_unknown_linux_musl=musl-gcc
  else
    echo "no musl C compiler: install musl-tools (Debian/Ubuntu) or musl-gcc" >&2
    exit 1
  fi
fi

# Linked at a fixed address (not position-independent): a static-pie binary rewrites
# ~77,000 pointers in its read-only data at every start, which copies 1.7 MiB of its pages
# into private memory and takes half the page faults before the first response
# (benches/README.md). The price: the host's own code and data are not randomized (ASLR),
# as with Go's default static binaries; its stacks, heap and every guest's code and memory
# still are. An explicit --target keeps the flag off build scripts and proc-macros, which
# must stay position-independent.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C relocation-model=static"
"${lto[@]}" cargo build --profile image --quiet -p wasmfn --target "$target" "${features[@]}" >&2
# One output path for both kinds: the caller copies it before building the other.
echo "target/$target/image/wasmfn"
