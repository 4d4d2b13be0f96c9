# peftonnx: the two commands are `make demo` and `make test`.
SHELL := /bin/bash
export ONNXRUNTIME_LIB ?= $(CURDIR)/.ort/libonnxruntime.so.1
GO ?= go
GOFLAGS_TEST ?= -count=1 -timeout 20m

.PHONY: all ort build demo test test-mpi vet check bench bench-parity bench-go bench-mpi fmt

all: build

ort: .ort/libonnxruntime.so.1

.ort/libonnxruntime.so.1:
	./scripts/fetch-ort.sh

# WITH_MPI sets MPI_TAGS to "-tags mpi" where Open MPI is installed, and to
# nothing elsewhere (scripts/detect-mpi.sh says why on stderr).
WITH_MPI = eval "$$(GO='$(GO)' ./scripts/detect-mpi.sh)"

build:
	@$(WITH_MPI); set -x; $(GO) build $$MPI_TAGS -o bin/peftonnx ./cmd/peftonnx

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
	$(MAKE) --no-print-directory test-mpi
	GO='$(GO)' ./scripts/fuzz.sh ./graph FuzzParse 10s
	GO='$(GO)' ./scripts/fuzz.sh ./tokenizer FuzzLoad 5s
	GO='$(GO)' ./scripts/fuzz.sh ./tokenizer FuzzEncode 5s
	GO='$(GO)' ./scripts/fuzz.sh ./graph FuzzLoadExternal 5s
	GO='$(GO)' ./scripts/fuzz.sh ./rewrite FuzzRecord 5s

# test-mpi vets and tests the MPI build of internal/mpi, whose tests run
# themselves under mpirun, and runs data-parallel training
# (cmd/peftonnx's TestDataParallel*) and tensor-parallel training
# (cmd/peftonnx's TestTensorParallelTrain*, train/tensorparallel's
# TestTensorParallelMPI, and DP × TP on -np 4, with prefix tuning, accumulation,
# evaluation and a resume) under mpirun;
# without Open MPI it says so and does nothing.
test-mpi:
	@$(WITH_MPI); if [ -z "$$MPI_TAGS" ]; then echo "test-mpi: no MPI build here, so its tests do not run" >&2; exit 0; fi; \
	set -x; $(GO) vet $$MPI_TAGS ./internal/mpi/... ./cmd/peftonnx/ ./train/tensorparallel/ && $(GO) test $(GOFLAGS_TEST) $$MPI_TAGS ./internal/mpi/... && \
	$(GO) test $(GOFLAGS_TEST) $$MPI_TAGS -run '^Test(DataParallel|TensorParallelTrain)' ./cmd/peftonnx/ && \
	$(GO) test $(GOFLAGS_TEST) $$MPI_TAGS -run '^Test(DataTimes)?TensorParallel(Accumulate|Prefix)?MPI$$' ./train/tensorparallel/

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

# bench-mpi measures internal/mpi's allreduce on 2 ranks under mpirun.
bench-mpi:
	GO='$(GO)' ./scripts/bench-mpi.sh

fmt:
	gofmt -w $$(git ls-files '*.go')
