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
# The hosts are built by deploy/build-host.sh: it needs the x86_64-unknown-linux-musl Rust
# target and a musl C compiler (Debian/Ubuntu: apt-get install musl-tools).
set -euo pipefail
cd "$(dirname "$0")/.."

manifest=wasmfn.toml
runtime_config=()
tag=wasmfn:dev
lto=()
while [ $# -gt 0 ]; do
  case "$1" in
    --lto) lto=(--lto); shift ;;
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

echo "== building the guests and the static hosts" >&2
(cd guests && cargo build --release --quiet)
tools=$(mktemp -d)
ctx=$(mktemp -d)
trap 'rm -rf "$ctx" "$tools"' EXIT
# Two static hosts from the same source (deploy/build-host.sh says how and why): one with
# the compiler, which stages and compiles here, and the one the image runs, without it.
cp "$(deploy/build-host.sh compiling)" "$tools/wasmfn"
cp "$(deploy/build-host.sh runtime-only "${lto[@]}")" "$ctx/wasmfn"

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
