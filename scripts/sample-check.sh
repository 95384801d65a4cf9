#!/bin/bash
# sample-check.sh: CUDA op/model tests; 8B decode with sampling from the
# device's top-k vs the whole row read back; staged vs pageable upload time
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_model >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
./build-cuda/tests/test_cuda_ops > /tmp/ops.log 2>&1; grep -E "FAIL|top_k|uploads" /tmp/ops.log | head -20; tail -1 /tmp/ops.log
./build-cuda/tests/test_cuda_model 2>&1 | grep -E "FAIL|passed"
M8=synthetic:llama3-8b:q4:g64
for v in - MLXN_HOST_SAMPLING=1 - MLXN_HOST_SAMPLING=1; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== sampling top-k 40 ${e[*]:-device top-k}"
  env "${e[@]}" ./build-cuda/mlxn generate -m $M8 --backend cuda --tokens 1,2,3,4 -n 256 --temp 0.8 --top-k 40 --seed 3 --ignore-eos 2>&1 | grep -E "generation|loaded"
done
echo "== greedy"; ./build-cuda/mlxn generate -m $M8 --backend cuda --tokens 1,2,3,4 -n 256 --temp 0 --ignore-eos 2>&1 | grep -E "generation|loaded"
echo "== greedy, pageable upload"; MLXN_CU_PINNED=0 ./build-cuda/mlxn generate -m $M8 --backend cuda --tokens 1,2,3,4 -n 16 --temp 0 --ignore-eos 2>&1 | grep -E "generation|loaded"
