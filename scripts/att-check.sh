#!/bin/bash
# att-check.sh: CUDA op/model tests, then the 8B decode with the cluster
# attention kernel vs split + merge (MLXN_CU_ATT_CLUSTER=0)
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_model >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
./build-cuda/tests/test_cuda_ops > /tmp/ops.log 2>&1; grep -E "FAIL" /tmp/ops.log | head -20; grep -c "ok attention" /tmp/ops.log; tail -1 /tmp/ops.log
./build-cuda/tests/test_cuda_model 2>&1 | grep -E "FAIL|passed"
M8=synthetic:llama3-8b:q4:g64
for v in - MLXN_CU_ATT_CLUSTER=0 - MLXN_CU_ATT_CLUSTER=0; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== ${e[*]:-cluster}"
  env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 3 2>&1 | grep -E "^pp|^tg"
  env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 3500 -n 128 -r 1 2>&1 | grep -E "^tg"
done
MLXN_CUDA_PROFILE=1 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 32 -r 1 2>&1 | grep -E "attention out=4096"
MLXN_CU_ATT_CLUSTER=0 MLXN_CUDA_PROFILE=1 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 32 -r 1 2>&1 | grep -E "attention out=4096"
