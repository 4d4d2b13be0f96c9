#!/usr/bin/env bash
# install-npm-client.sh installs the official openai npm package, at the
# version and integrity hash that serve/openai/testdata/client's
# package-lock.json pins, into .tools/npm-openai (ignored by git), for the
# tests that drive `peftonnx serve` with a real client. An install of the
# pinned version is kept. It needs node and npm (Debian's nodejs and npm,
# which scripts/install-test-deps.sh installs where missing).
set -euo pipefail
cd "$(dirname "$0")/.."
src=serve/openai/testdata/client
dest=.tools/npm-openai
want=$(sed -n 's/.*"openai": "\(.*\)".*/\1/p' "$src/package.json")
have=$(sed -n 's/^  "version": "\(.*\)",$/\1/p' "$dest/node_modules/openai/package.json" 2>/dev/null || true)
if [ -n "$want" ] && [ "$have" = "$want" ] && cmp -s "$src/package-lock.json" "$dest/package-lock.json"; then
  exit 0
fi
for tool in node npm; do
  command -v "$tool" >/dev/null || { echo "install-npm-client: $tool not found; install Debian's nodejs and npm" >&2; exit 1; }
done
rm -rf "$dest"
mkdir -p "$dest"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
echo "install-npm-client: installing openai@$want into $dest" >&2
# npm ci installs exactly what the lock file pins and checks its integrity hash.
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=error --engine-strict=false)
