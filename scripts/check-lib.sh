#!/usr/bin/env bash
# The library never exits, aborts or writes to stdout: check the symbols the
# library's objects (everything but the CLI) reference. Prints a summary line.
set -euo pipefail
build=${1:-build}
bad=0
for o in $(find "$build/obj/src" -name '*.o' ! -path '*/cli/*'); do
  syms=$(nm -u "$o" | awk '{print $2}' | grep -E '^(exit|_exit|abort|printf|puts|putchar|vprintf|__assert_fail|stdout|quick_exit)$' || true)
  if [ -n "$syms" ]; then echo "check-lib: $o references: $syms"; bad=$((bad + 1)); fi
done
if [ "$bad" -eq 0 ]; then echo "check-lib: no exit/abort/stdout in library objects"; fi
[ "$bad" -eq 0 ]
