#!/usr/bin/env bash
# Builds the wasmfn host image: a static binary plus a manifest's components, precompiled.
#
#   deploy/build-image.sh [--manifest wasmfn.toml|spin.toml] [--runtime-config-file FILE]
#                         [--tag wasmfn:dev] [--lto]
#
# --lto links the image's host with thin LTO and one codegen unit: 9% smaller and 1 MiB
# less resident (benches/README.md), for a build several minutes longer.
#
# Uses docker, or podman/buildah where that is what you have (WASMFN_CONTAINER_TOOL to pick).
# Needs the x86_64-unknown-linux-musl Rust target (added with rustup if missing) and a musl C
# compiler for wasmtime's small C helper (Debian/Ubuntu: apt-get install musl-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=wasmfn.toml
runtime_config=()
tag=wasmfn:dev
lto=()
while [ $# -gt 0 ]; do
  case "$1" in
    --lto) lto=(env CARGO_PROFILE_IMAGE_LTO=thin CARGO_PROFILE_IMAGE_CODEGEN_UNITS=1); shift ;;
    --manifest) manifest=$2; shift 2 ;;
    --runtime-config-file) runtime_config=(--runtime-config-file "$2"); shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    *) echo "usage: $0 [--manifest FILE] [--runtime-config-file FILE] [--tag IMAGE] [--lto]" >&2; exit 2 ;;
  esac
done

tool=${WASMFN_CONTAINER_TOOL:-}
if [ -z "$tool" ]; then
  for t in docker podman buildah; do
    if command -v "$t" >/dev/null; then tool=$t; break; fi
  done
fi
[ -n "$tool" ] || { echo "no docker, podman or buildah found" >&2; exit 1; }

target=x86_64-unknown-linux-musl
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx "$target"; then
  rustup target add "$target"
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

# Two static hosts from the same source: one with the compiler, which stages and compiles
# here, and the one the image runs, without it (the `compiler` feature off): it only loads
# what was compiled, and is a third smaller, with fewer pages to map at a cold start.
#
# Both are linked at a fixed address (not position-independent): a static-pie binary
# rewrites ~77,000 pointers in its read-only data at every start, which copies 1.7 MiB of
# its pages into private memory and takes half the page faults before the first response
# (benches/README.md). The price: the host's own code and data are not randomized (ASLR),
# as with Go's default static binaries; its stacks, heap and every guest's code and memory
# still are.
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C relocation-model=static"
echo "== building the guests and the static hosts" >&2
(cd guests && cargo build --release --quiet)
bin="target/$target/image/wasmfn"
tools=$(mktemp -d)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx" "$tools"' EXIT
cargo build --profile image --quiet -p wasmfn --target "$target"
cp "$bin" "$tools/wasmfn"
"${lto[@]}" cargo build --profile image --quiet -p wasmfn --target "$target" --no-default-features
cp "$bin" "$ctx/wasmfn"

# Stage the build context as the image's root: the manifest at /app/wasmfn.toml, its
# components and files where it names them (`wasmfn deploy stage`, so the manifest is read
# by the same code that serves it, a spin.toml too, and never rewritten).
"$tools/wasmfn" deploy stage --manifest "$manifest" "${runtime_config[@]}" --out "$ctx" >&2
# Precompile for the image's engine: the same wasmtime, target and settings, so the
# runtime-only host finds every entry (a component it does not find is refused at start,
# saying how to precompile it). The cache is keyed by the component's bytes, so compiling
# the originals serves the copies.
"$tools/wasmfn" compile --manifest "$manifest" "${runtime_config[@]}" --cache-dir "$ctx/app/cache" >&2

echo "== $tool build -t $tag" >&2
case "$tool" in
  buildah) buildah bud -f deploy/Containerfile -t "$tag" "$ctx" ;;
  *) "$tool" build -q -f deploy/Containerfile -t "$tag" "$ctx" ;;
esac
echo "$tag"
