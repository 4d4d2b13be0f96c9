#!/usr/bin/env bash
# bench-mpi.sh runs internal/mpi's allreduce benchmark on 2 ranks under
# mpirun, over shared memory and over TCP on the loopback interface.
# NP, COUNT (iterations per size) and GO change it.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(./scripts/detect-mpi.sh)"
if [ -z "$MPI_TAGS" ] || ! command -v mpirun >/dev/null; then
  echo "bench-mpi: needs Open MPI (libopenmpi-dev, openmpi-bin)" >&2
  exit 1
fi
GO=${GO:-go}
NP=${NP:-2}
COUNT=${COUNT:-20}
mkdir -p bin
# shellcheck disable=SC2086 # MPI_TAGS is two words
"$GO" test $MPI_TAGS -c -o bin/mpi.test ./internal/mpi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PEFTONNX_MPI_TEST=BenchmarkAllReduceFloat32
for transport in "shared memory:self,vader:" "tcp loopback:self,tcp:--mca btl_tcp_if_include lo"; do
  IFS=: read -r name btl extra <<<"$transport"
  echo "== $NP ranks, $name"
  # shellcheck disable=SC2086 # extra holds several arguments
  mpirun --oversubscribe --bind-to none -np "$NP" --mca pml ob1 --mca oob_tcp_if_include lo --mca btl "$btl" $extra \
    bin/mpi.test -test.run '^$' -test.bench AllReduceFloat32 -test.benchtime "${COUNT}x"
done
