#!/bin/bash
# gpu-sweep.sh: the working tree's measuring switches on one GPU machine,
# without a second build (gpu-ab.sh compares against another commit).
# Builds once, then $ROUNDS rounds (default 2) over the default settings
# ("-") and each environment variant in $VARIANTS ("A=1,B=2" sets both),
# `bench -m M -p 512 -n 128 -r 3` each for every M in $MODELS (default the
# synthetic 8B MLX 4-bit g64; pp512 and tg128 on one line).
# With $SHAPES set ("NxK NxK ..."), first the one-row `bench ops` line of
# each shape for the formats in $FORMATS (default mlx-q4-g64), in each
# setting too (several N at one K tell a fixed cost a call, the intercept,
# from the streaming rate, the slope).
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader
B=./build-cuda/mlxn
if [ -n "${SHAPES:-}" ]; then
  for r in $(seq ${ROUNDS:-2}); do
    for v in - ${VARIANTS:-}; do
      e=()
      [ "$v" != - ] && e=(${v//,/ })
      for s in $SHAPES; do
        echo "${e[*]:-default}: $(env "${e[@]}" $B bench ops --backend cuda --rows 1 --formats "${FORMATS:-mlx-q4-g64}" \
          --shape "$s" 2>&1 | grep -E "^[a-z].* 1 +[0-9]+ +[0-9]+ " | tr -s ' ' | tr '\n' ' ')"
      done
    done
  done
fi
for M in ${MODELS:-synthetic:llama3-8b:q4:g64}; do
  for r in $(seq ${ROUNDS:-2}); do
    for v in - ${VARIANTS:-}; do
      e=()
      [ "$v" != - ] && e=(${v//,/ })
      echo "== $M ${e[*]:-default} (round $r): $(env "${e[@]}" $B bench -m "$M" --backend cuda -p 512 -n 128 -r 3 2>&1 |
        grep -E "^(pp|tg)" | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
