#!/usr/bin/env bash
# gpu-prefill.sh — on a GPU machine: build with CUDA (as gpu-check.sh), run
# the CUDA op and model tests, the prefill matmul table of cuda_bench (tile
# kernels vs cuBLAS vs the plain bf16 GEMM reference), the synthetic 8B
# bench with the cuBLAS path on and off (MLXN_CU_BLAS=0), and one per-node
# profile. Logs go to $OUT (when set) or /tmp.
set -u
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/mlxn-gpu-prefill}
mkdir -p "$LOG"
source scripts/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1 | head -1
t0=$(date +%s)
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/bench/cuda_bench build-cuda/tests/test_cuda_ops \
  build-cuda/tests/test_cuda_model >"$LOG/build.log" 2>&1 || { tail -30 "$LOG/build.log"; exit 1; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 150 ./build-cuda/tests/test_cuda_ops >"$LOG/test_ops.log" 2>&1; echo "test_cuda_ops exit $?"
grep -E "FAIL|ERROR|error" "$LOG/test_ops.log" | head -30; tail -1 "$LOG/test_ops.log"
timeout 120 ./build-cuda/tests/test_cuda_model >"$LOG/test_model.log" 2>&1; echo "test_cuda_model exit $?"
grep -E "FAIL" "$LOG/test_model.log" | head; tail -1 "$LOG/test_model.log"
timeout 120 ./build-cuda/bench/cuda_bench --prefill >"$LOG/bench_prefill.log" 2>&1; echo "cuda_bench exit $?"
M8=synthetic:llama3-8b:q4:g64
V8=${VARIANTS8:-"MLXN_CU_BLAS=0 -"}
for v in $V8; do
  [ "$v" = - ] && e=() || e=("$v")
  env "${e[@]}" timeout 150 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 32 -r 2 >"$LOG/b8_$v.log" 2>&1
done
MLXN_CUDA_PROFILE=1 timeout 150 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 8 -r 1 >"$LOG/prof.log" 2>&1
echo "== profile (MLXN_CUDA_PROFILE=1)"
grep -A24 "cuda profile" "$LOG/prof.log" | cut -c1-90
echo "== cuda_bench --prefill"
grep -v "^device-to-device\|^$" "$LOG/bench_prefill.log" | tail -24
for v in $V8; do
  echo "== 8B ${v}"
  tail -4 "$LOG/b8_$v.log" | head -3
done
