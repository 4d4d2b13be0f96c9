#!/usr/bin/env bash
# install-test-deps.sh installs what the test suite uses beyond Go and the
# ONNX Runtime library, each group only where it is missing:
#   - NumPy, so that tests can check that numpy reads the .npy files
#     peftonnx writes (python3-numpy);
#   - Open MPI, so that the MPI build and its tests under mpirun run
#     (libopenmpi-dev, openmpi-bin, and pkg-config that cgo finds it with);
#   - iproute2's ip, with which the MPI tests make two network namespaces.
# It is best effort: without root, apt or the network, those checks skip
# and say why.
set -u
groups=()
if ! { /usr/bin/python3 -c 'import numpy' || python3 -c 'import numpy'; } >/dev/null 2>&1; then
  groups+=("the numpy checks:python3-numpy")
fi
if ! { command -v mpirun && command -v pkg-config && pkg-config --exists ompi-c; } >/dev/null 2>&1; then
  groups+=("the MPI build and tests:libopenmpi-dev openmpi-bin pkg-config")
fi
if ! command -v ip >/dev/null; then
  groups+=("the MPI test across network namespaces:iproute2")
fi
[ ${#groups[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  for g in "${groups[@]}"; do
    echo "install-test-deps: cannot install ${g#*:} here (needs root and apt-get); ${g%%:*} will skip" >&2
  done
  exit 0
fi
if ! apt-get update -qq >/dev/null 2>&1; then
  echo "install-test-deps: apt-get update failed; installing from the package lists at hand" >&2
fi
for g in "${groups[@]}"; do
  pkgs=${g#*:}
  echo "install-test-deps: installing $pkgs" >&2
  # shellcheck disable=SC2086 # the package names split on purpose
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $pkgs >/dev/null 2>&1 ||
    echo "install-test-deps: apt-get could not install $pkgs; ${g%%:*} will skip" >&2
done
exit 0
