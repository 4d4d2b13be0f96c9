#!/usr/bin/env bash
# install-torch.sh makes sure that the Python the benchmark uses
# ($BENCH_PYTHON, default /usr/bin/python3) imports torch and numpy, and that
# torch's BLAS is an optimized one.
#
# On Debian and Ubuntu it installs, when missing, python3-torch (Debian's
# CPU build of PyTorch) and libopenblas0-openmp. Debian's torch is built
# against the generic libblas.so.3; with only the reference BLAS behind it,
# a matrix product runs some 40 times slower than with OpenBLAS, which would
# make any comparison meaningless. It runs `apt-get update` once, before the
# first install, and needs root (or sudo). Only the bench targets call it;
# `make test` never does.
set -euo pipefail

PY=${BENCH_PYTHON:-/usr/bin/python3}
log=$(mktemp)
trap 'rm -f "$log"' EXIT

have_torch() { "$PY" -c 'import torch, numpy' 2>/dev/null; }
have_openblas() { dpkg-query -W -f='${Status}' libopenblas0-openmp 2>/dev/null | grep -q 'ok installed'; }

need=()
have_torch || need+=(python3-torch python3-numpy)
if command -v dpkg-query >/dev/null 2>&1 && ! have_openblas; then
	need+=(libopenblas0-openmp)
fi
if [ ${#need[@]} -eq 0 ]; then
	exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
	if have_torch; then
		exit 0 # not Debian: trust the BLAS the user's torch brings
	fi
	echo "install-torch: $PY cannot import torch and there is no apt-get; install PyTorch (CPU) by hand and set BENCH_PYTHON" >&2
	exit 1
fi
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "install-torch: installing ${need[*]} needs root" >&2
		exit 1
	fi
fi

echo "install-torch: installing ${need[*]} (Debian packages, CPU)" >&2
if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"; } >"$log" 2>&1; then
	cat "$log" >&2
	echo "install-torch: apt-get failed" >&2
	exit 1
fi
if ! have_torch; then
	echo "install-torch: the packages are installed but $PY still cannot import torch; set BENCH_PYTHON to the system Python" >&2
	exit 1
fi
