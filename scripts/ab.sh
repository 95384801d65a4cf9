#!/bin/bash
# ab.sh DIR_A DIR_B: build both trees with CUDA, then run the synthetic 8B
# bench twice each: A with no variant, B once per environment variant in
# $VARIANTS ("-" = none)
A=$1; B=$2; shift 2
for d in $A $B; do (cd $d && source scripts/gpu-env.sh && make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b_$(basename $d).log 2>&1 || tail -20 /tmp/b_$(basename $d).log) & done; wait
M8=${M8:-synthetic:llama3-8b:q4:g64}
run() { echo "== $1 ${2:-}"; (cd $1 && env $2 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 3 2>&1 | grep -E "^pp|^tg"); }
for r in 1 2; do
  run $A
  for v in ${VARIANTS:--}; do [ "$v" = - ] && run $B || run $B "$v"; done
done
