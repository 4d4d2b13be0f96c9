#!/usr/bin/env bash
# check-tracked.sh fails when git tracks an executable binary (ELF, Mach-O,
# PE, or WebAssembly by their magic numbers): build outputs belong in
# ignored folders, never in the repository.
set -euo pipefail
cd "$(dirname "$0")/.."
bad=0
while IFS= read -r -d '' f; do
  [ -f "$f" ] || continue
  magic=$(head -c 4 -- "$f" | od -An -tx1 | tr -d ' \n')
  case "$magic" in
    7f454c46 | feedface | feedfacf | cefaedfe | cffaedfe | cafebabe | 0061736d | 4d5a*)
      echo "check-tracked: $f is an executable binary (magic $magic); remove it from git and ignore it" >&2
      bad=1 ;;
  esac
done < <(git ls-files -z)
exit $bad
