#!/usr/bin/env bash
# fuzz.sh PKG TARGET DURATION: runs one fuzz target for a bounded time.
# A crash fails at once (Go writes the failing input under
# PKG/testdata/fuzz/TARGET). Go's fuzzer can also stop with only "context
# deadline exceeded" when a worker is slow to answer at the deadline on a
# busy machine; that is no finding, so such a run is tried once more.
set -uo pipefail
pkg=$1 target=$2 duration=$3
GO=${GO:-go}
log=$(mktemp)
trap 'rm -f "$log"' EXIT
for try in 1 2; do
	if "$GO" test -run '^$' -fuzz "^${target}\$" -fuzztime "$duration" -fuzzminimizetime 2s "$pkg" 2>&1 | tee "$log"; then
		exit 0
	fi
	if grep -q 'Failing input written' "$log" || ! grep -q 'context deadline exceeded' "$log"; then
		exit 1
	fi
	echo "fuzz.sh: $target stopped at its deadline without a finding (a slow worker); try $try of 2" >&2
done
exit 1
