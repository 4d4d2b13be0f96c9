#!/usr/bin/env bash
# install-test-deps.sh installs what the test suite uses beyond Go and the
# ONNX Runtime library: NumPy, so that tests can check that numpy reads the
# .npy files peftonnx writes. It is best effort: without root, apt or the
# network, those checks skip and say why.
set -u
if /usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || python3 -c 'import numpy' >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
  echo "install-test-deps: numpy is missing and cannot be installed here; the numpy checks will skip" >&2
  exit 0
fi
echo "install-test-deps: installing python3-numpy" >&2
{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-numpy; } >/dev/null 2>&1 ||
  echo "install-test-deps: apt-get could not install python3-numpy; the numpy checks will skip" >&2
exit 0
