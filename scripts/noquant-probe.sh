#!/bin/bash
# noquant-probe.sh: decode with and without the x-quantization kernels (upper
# bound of folding them into producers), and a per-node profile
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
M8=synthetic:llama3-8b:q4:g64
for v in - MLXN_CU_NOQUANT=1 - MLXN_CU_NOQUANT=1 MLXN_CU_SKIP=rope,rope_kv_write,kv_write; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== ${e[*]:-default}"; env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 3 2>&1 | grep -E "^tg"
done
MLXN_CUDA_PROFILE=1 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 0 -n 32 -r 1 2>&1 | grep -A16 "cuda profile" | cut -c1-90
