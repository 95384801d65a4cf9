#!/bin/bash
# wps-probe.sh: the MLX 4-bit M = 1 kernel with fewer warps per SM (MLXN_CU_MLX4_WPS)
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/bench/cuda_bench >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
for w in 0 8 16 24 32; do
  echo "== MLXN_CU_MLX4_WPS=$w"
  MLXN_CU_MLX4_WPS=$w ./build-cuda/bench/cuda_bench --int 2>&1 | grep -E "^mlx4|copy reference"
  MLXN_CU_MLX4_WPS=$w ./build-cuda/mlxn bench -m synthetic:llama3-8b:q4:g64 --backend cuda -p 512 -n 128 -r 2 2>&1 | grep -E "^pp|^tg"
done
