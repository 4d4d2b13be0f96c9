# peftonnx: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
export ONNXRUNTIME_LIB ?= $(CURDIR)/.ort/libonnxruntime.so.1
GO ?= go
GOFLAGS_TEST ?= -count=1 -timeout 20m

.PHONY: all ort build demo test vet check bench bench-parity bench-go fmt

all: build

ort: .ort/libonnxruntime.so.1

.ort/libonnxruntime.so.1:
	./scripts/fetch-ort.sh

build:
	$(GO) build -o bin/peftonnx ./cmd/peftonnx

demo: ort build
	./bin/peftonnx demo --out out/demo

vet:
	$(GO) vet ./...

# check: no executable binary is tracked, and the generated protobuf code
# is what onnx.proto makes.
check:
	./scripts/check-tracked.sh
	./scripts/check-generated.sh

test: ort vet check
	./scripts/install-test-deps.sh
	$(GO) test $(GOFLAGS_TEST) ./...
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 10s -fuzzminimizetime 2s ./graph
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 5s -fuzzminimizetime 2s ./tokenizer
	$(GO) test -run '^$$' -fuzz FuzzEncode -fuzztime 5s -fuzzminimizetime 2s ./tokenizer

# bench runs peftonnx and PyTorch side by side (bench/README.md); it installs
# Debian's python3-torch when missing. bench-go runs the Go benchmarks.
BENCH_FLAGS ?=
bench: ort
	./bench/install-torch.sh
	$(GO) run ./bench/cmd/peftbench all $(BENCH_FLAGS)

bench-parity: ort
	./bench/install-torch.sh
	$(GO) run ./bench/cmd/peftbench parity $(BENCH_FLAGS)

bench-go: ort
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
