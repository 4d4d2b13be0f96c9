#!/bin/sh
# Checks that ONNX Runtime loads .onnx_adapter files we write and applies
# them to lora-inputs-ort (output = x·W + x·A·B). Not part of go test: it
# needs cgo, the ORT headers from github.com/yalue/onnxruntime_go and the
# library in .ort/ (make fetches it).
#   sh adapter/testdata/ortcheck/run.sh   (from the repository root)
set -e
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
hdr=$(go list -m -f '{{.Dir}}' github.com/yalue/onnxruntime_go 2>/dev/null || true)
[ -n "$hdr" ] || hdr=$(go env GOMODCACHE)/github.com/yalue/onnxruntime_go@v1.27.0
lib=${ONNXRUNTIME_LIB:-$root/.ort/libonnxruntime.so.1}
cc -o "$tmp/check" adapter/testdata/ortcheck/check.c -I"$hdr" "$lib" -Wl,-rpath,"$(dirname "$lib")"
ORTCHECK_DIR=$tmp go test ./adapter -run TestWriteORTCheckFiles -count=1 >/dev/null
"$tmp/check" "$root/../shared/models/lora-inputs-ort/model.onnx" "$tmp"/*.onnx_adapter
