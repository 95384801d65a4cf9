#!/usr/bin/env bash
# Runs every built test program in $1/tests, prints each one's output and a
# final "N passed, N failed" line summed over all of them (the line CI reads).
# A program that crashes or exits non-zero without a summary counts as one
# failure. MLXN_TEST_WRAP (e.g. "valgrind -q") prefixes each program.
set -u
build=${1:-build}
pass=0; fail=0; skipped=0
# test_cuda_model runs once per CUDA graph capture mode (the default is
# MLXN_CU_GRAPH=stream with rope / kv_write launch groups).
runs() {
  case "$1" in
    test_cuda_model) printf '%s\n' - MLXN_CU_GRAPH=dag MLXN_CU_GRAPH=lanes MLXN_CU_FUSE=0 MLXN_CU_GROUP=0 ;;
    *) echo - ;;
  esac
}
for t in "$build"/tests/test_*; do
  [ -x "$t" ] || continue
  name=$(basename "$t")
  for v in $(runs "$name"); do
  if [ "$v" = - ]; then envs=(); else envs=("$v"); echo "== $name with $v"; fi
  out=$( cd "$(dirname "$0")/.." && env "${envs[@]}" ${MLXN_TEST_WRAP:-} "$t" 2>&1 ); rc=$?
  printf '%s\n' "$out"
  line=$(printf '%s\n' "$out" | grep -E "^$name: [0-9]+ passed, [0-9]+ failed" | tail -n 1)
  if [ -n "$line" ]; then
    p=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\1/')
    f=$(echo "$line" | sed -E 's/.*: ([0-9]+) passed, ([0-9]+) failed.*/\2/')
    s=$(echo "$line" | sed -nE 's/.*, ([0-9]+) skipped.*/\1/p')
    pass=$((pass + p)); fail=$((fail + f)); skipped=$((skipped + ${s:-0}))
    if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then echo "$name: exit code $rc"; fail=$((fail + 1)); fi
  else
    echo "$name: no summary line (exit code $rc)"; fail=$((fail + 1))
  fi
  done
done
echo "${pass} passed, ${fail} failed, ${skipped} skipped"
[ "$fail" -eq 0 ]
