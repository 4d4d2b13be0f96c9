#!/usr/bin/env bash
# check-generated.sh checks that graph/onnxpb/onnx.pb.go is what
# `go generate ./graph/...` makes from onnx.proto today: it regenerates the
# code in a scratch folder (the checkout is not touched) and compares.
# protoc comes from Debian's protobuf-compiler, installed here when missing
# and possible; protoc-gen-go is built at the version go.mod pins. Without
# protoc the check says so and passes, as the numpy checks do.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v protoc >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "check-generated: installing protobuf-compiler" >&2
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq protobuf-compiler; } >/dev/null 2>&1 || true
  fi
fi
if ! command -v protoc >/dev/null; then
  echo "check-generated: SKIPPED: protoc is missing and cannot be installed here, so onnx.pb.go was not regenerated" >&2
  exit 0
fi
version=$(go list -m -f '{{.Version}}' google.golang.org/protobuf)
tools=$PWD/.tools/protoc-gen-go-$version
if [ ! -x "$tools/protoc-gen-go" ]; then
  GOBIN=$tools go install "google.golang.org/protobuf/cmd/protoc-gen-go@$version"
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp graph/onnxpb/onnx.proto graph/onnxpb/doc.go "$scratch/"
(cd "$scratch" && PATH="$tools:$PATH" go generate ./doc.go)
if ! diff -u graph/onnxpb/onnx.pb.go "$scratch/onnx.pb.go" >&2; then
  echo "check-generated: graph/onnxpb/onnx.pb.go differs from what onnx.proto generates: run go generate ./graph/... (protoc $(protoc --version), protoc-gen-go $version)" >&2
  exit 1
fi
echo "check-generated: onnx.pb.go is up to date with onnx.proto" >&2
