# peftonnx: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
export ONNXRUNTIME_LIB ?= $(CURDIR)/.ort/libonnxruntime.so.1
GO ?= go
GOFLAGS_TEST ?= -count=1 -timeout 20m

.PHONY: all ort build demo test vet bench fmt

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

test: ort vet
	./scripts/install-test-deps.sh
	$(GO) test $(GOFLAGS_TEST) ./...
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 10s -fuzzminimizetime 2s ./graph

bench: ort
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
