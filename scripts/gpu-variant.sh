#!/bin/bash
# gpu-variant.sh: build with CUDA, run test_cuda_ops (printing the lines that
# match $OPS_GREP, the failures and the summary) and test_cuda_model, then
# the decode bench of each model in $MODELS (default the synthetic 8B 4-bit)
# in $ROUNDS rounds (default 2), each round the
# default build and every environment variant in $VARIANTS ("-" = none,
# A=1,B=2 = both), alternating, so each variant has a same-machine baseline.
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_model \
  >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader
./build-cuda/tests/test_cuda_ops >/tmp/ops.log 2>&1
grep -E "FAIL|${OPS_GREP:-producer fusion case}" /tmp/ops.log | head -40; tail -1 /tmp/ops.log
./build-cuda/tests/test_cuda_model >/tmp/m.log 2>&1; grep -E "FAIL${MODEL_GREP:+|$MODEL_GREP}" /tmp/m.log | head -12; tail -1 /tmp/m.log
for M in ${MODELS:-synthetic:llama3-8b:q4:g64}; do
  for r in $(seq ${ROUNDS:-2}); do
    for v in - ${VARIANTS:-}; do
      [ "$v" = - ] && e=() || e=(${v//,/ })
      echo "== $M ${e[*]:-default}: $(env "${e[@]}" ./build-cuda/mlxn bench -m $M --backend cuda -p 512 -n 128 -r 3 2>&1 |
        grep -E "^pp|^tg|launches" | tr -s ' ' | tr '\n' ' ')"
    done
  done
done
