#!/usr/bin/env bash
# install-test-deps.sh installs what the test suite uses beyond Go and the
# ONNX Runtime library, each group only where it is missing:
#   - NumPy, so that tests can check that numpy reads the .npy files
#     peftonnx writes (python3-numpy);
#   - Open MPI, so that the MPI build and its tests under mpirun run
#     (libopenmpi-dev, openmpi-bin, and pkg-config that cgo finds it with);
#   - iproute2's ip, with which the MPI tests make two network namespaces;
#   - Node.js and npm (nodejs, npm), and with them the official openai npm
#     package that serve/openai's tests drive the server with
#     (scripts/install-npm-client.sh).
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
if ! { command -v node && command -v npm; } >/dev/null 2>&1; then
  groups+=("the tests with the openai npm client:nodejs npm")
fi
# npm_client installs the openai package once node and npm are there.
npm_client() {
  if command -v node >/dev/null && command -v npm >/dev/null; then
    "$(dirname "$0")/install-npm-client.sh" ||
      echo "install-test-deps: the openai npm package could not be installed; the tests with it will skip" >&2
  fi
}
if [ ${#groups[@]} -eq 0 ]; then
  npm_client
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  for g in "${groups[@]}"; do
    echo "install-test-deps: cannot install ${g#*:} here (needs root and apt-get); ${g%%:*} will skip" >&2
  done
  npm_client
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
npm_client
exit 0
