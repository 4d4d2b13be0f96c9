#!/usr/bin/env bash
# fetch-ort.sh installs the ONNX Runtime shared library for Linux x64 into .ort/.
#
# The library ships inside the npm package onnxruntime-node. We fetch the pinned
# tarball with `npm pack`, check it against the integrity hash that the registry
# publishes for that version (and against the one pinned here), and unpack only
# the library. Re-running is cheap: an existing library is kept.
set -euo pipefail

ORT_VERSION="${ORT_VERSION:-1.24.3}"
# sha512 of onnxruntime-node-1.24.3.tgz as published by the registry (dist.integrity).
ORT_INTEGRITY_PINNED="sha512-JH7+czbc8ALA819vlTgcV+Q214/+VjGeBHDjX81+ZCD0PCVCIFGFNtT0V4sXG/1JXypKPgScQcB3ij/hk3YnTg=="

root="$(cd "$(dirname "$0")/.." && pwd)"
dest="$root/.ort"
lib="$dest/libonnxruntime.so.1"

if [ -f "$lib" ] && [ "$(cat "$dest/VERSION" 2>/dev/null)" = "$ORT_VERSION" ]; then
  exit 0
fi
command -v npm >/dev/null || { echo "fetch-ort: npm not found; install Node.js" >&2; exit 1; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
cd "$tmp"

want="$(npm view "onnxruntime-node@$ORT_VERSION" dist.integrity 2>/dev/null || true)"
if [ "$ORT_VERSION" = "1.24.3" ]; then
  if [ -n "$want" ] && [ "$want" != "$ORT_INTEGRITY_PINNED" ]; then
    echo "fetch-ort: registry integrity for onnxruntime-node@$ORT_VERSION differs from the pinned hash" >&2
    exit 1
  fi
  want="$ORT_INTEGRITY_PINNED"
fi
[ -n "$want" ] || { echo "fetch-ort: no integrity hash for onnxruntime-node@$ORT_VERSION" >&2; exit 1; }

echo "fetch-ort: fetching onnxruntime-node@$ORT_VERSION" >&2
npm pack --silent "onnxruntime-node@$ORT_VERSION" >/dev/null
tgz="onnxruntime-node-$ORT_VERSION.tgz"
algo="${want%%-*}"
got="$algo-$(openssl dgst "-$algo" -binary "$tgz" | base64 -w0)"
if [ "$got" != "$want" ]; then
  echo "fetch-ort: integrity mismatch for $tgz: got $got want $want" >&2
  exit 1
fi
tar xzf "$tgz" package/bin/napi-v6/linux/x64/libonnxruntime.so.1
mkdir -p "$dest"
mv package/bin/napi-v6/linux/x64/libonnxruntime.so.1 "$lib.tmp"
mv "$lib.tmp" "$lib"
echo "$ORT_VERSION" > "$dest/VERSION"
echo "fetch-ort: installed $lib" >&2
