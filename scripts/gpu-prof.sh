#!/usr/bin/env bash
# gpu-prof.sh — on a GPU machine: build with CUDA (as gpu-check.sh), run the
# CUDA op and model tests, the MLX 4-bit decode kernels against each other
# (MLXN_CU_MLX4=0/1/2), the synthetic 8B bench per variant, and one
# per-node profile (MLXN_CUDA_PROFILE=1). Logs go to $OUT (when set) or /tmp.
set -u
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/mlxn-gpu-prof}
mkdir -p "$LOG"
source scripts/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1
t0=$(date +%s)
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/bench/cuda_bench build-cuda/tests/test_cuda_ops \
  build-cuda/tests/test_cuda_model >"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 120 ./build-cuda/tests/test_cuda_ops >"$LOG/test_ops.log" 2>&1; echo "test_cuda_ops exit $?"
grep -E "FAIL|attention T=[0-9][0-9]*" "$LOG/test_ops.log" | head -30; tail -1 "$LOG/test_ops.log"
timeout 120 ./build-cuda/tests/test_cuda_model >"$LOG/test_model.log" 2>&1; echo "test_cuda_model exit $?"
grep -E "FAIL" "$LOG/test_model.log" | head; tail -1 "$LOG/test_model.log"
# variants: environment assignments, "-" = the defaults
V=${VARIANTS:-"MLXN_CU_MLX4=0 MLXN_CU_PDL=0 -"}
for v in $V; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== cuda_bench --int ${e[*]:-defaults}"
  env "${e[@]}" timeout 100 ./build-cuda/bench/cuda_bench --int >"$LOG/bench_$v.log" 2>&1
  grep -E "copy reference|^mlx4|^q4_0|prefill|TFLOP|^f16 |^q8_0 |^q4_k " "$LOG/bench_$v.log"
done
M8=synthetic:llama3-8b:q4:g64
V8=${VARIANTS8:-"MLXN_CU_MLX4=0 -"}
for v in $V8; do
  [ "$v" = - ] && e=() || e=("$v")
  echo "== 8B ${e[*]:-defaults}"
  env "${e[@]}" timeout 150 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 2 >"$LOG/b8_$v.log" 2>&1
  tail -4 "$LOG/b8_$v.log" | head -3
done
echo "== profile (MLXN_CUDA_PROFILE=1)"
MLXN_CUDA_PROFILE=1 timeout 150 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 32 -r 1 >"$LOG/prof.log" 2>&1
grep -A40 "cuda profile" "$LOG/prof.log" | cut -c1-90
