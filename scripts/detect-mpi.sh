#!/usr/bin/env bash
# detect-mpi.sh prints shell assignments, for eval, that build peftonnx
# with MPI wherever Open MPI's library and headers are installed:
#   MPI_TAGS='-tags mpi'
# and, when only mpicc knows where Open MPI lives, the PKG_CONFIG_PATH that
# lets cgo's pkg-config find it. Where Open MPI or cgo is missing it prints
# MPI_TAGS= and says why on stderr, and the build is the one-process one.
set -u
GO=${GO:-go}
no_mpi() {
  echo "detect-mpi: $1; building without MPI (one process)" >&2
  echo "MPI_TAGS="
  exit 0
}
if [ "$("$GO" env CGO_ENABLED 2>/dev/null)" != 1 ]; then
  no_mpi "cgo is disabled (go env CGO_ENABLED)"
fi
if ! command -v pkg-config >/dev/null; then
  no_mpi "pkg-config, which cgo uses to find Open MPI, is not installed"
fi
if pkg-config --exists ompi-c; then
  echo "MPI_TAGS='-tags mpi'"
  exit 0
fi
# Open MPI installed outside pkg-config's search path (from source, under
# /opt): its mpicc names the library folder, which holds ompi-c.pc.
if libdirs=$(mpicc --showme:libdirs 2>/dev/null); then
  for d in $libdirs; do
    if [ -f "$d/pkgconfig/ompi-c.pc" ]; then
      printf "export PKG_CONFIG_PATH='%s'\n" "$d/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
      echo "MPI_TAGS='-tags mpi'"
      exit 0
    fi
  done
  no_mpi "mpicc is installed but none of its library folders ($libdirs) has pkgconfig/ompi-c.pc"
fi
no_mpi "Open MPI is not installed (Debian: apt-get install libopenmpi-dev openmpi-bin)"
