#!/usr/bin/env bash
# gpu-check.sh — on a machine with an NVIDIA GPU: build with CUDA, run every
# test (CUDA ones included), the decode-matmul bandwidth benchmark and the
# graph demo, then print a short table. Logs go to $OUT (when set) or /tmp.
set -u
cd "$(dirname "$0")/.."
LOG=${OUT:-/tmp/mlxn-gpu-check}
mkdir -p "$LOG"
source scripts/gpu-env.sh
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 | head -2
t0=$(date +%s)
if ! make "${MK[@]}" -j16 all >"$LOG/build.log" 2>&1; then
  tail -40 "$LOG/build.log"; echo "gpu-check: build failed"; exit 1
fi
make "${MK[@]}" -j16 build-cuda/bench/cuda_bench >>"$LOG/build.log" 2>&1 || { tail -20 "$LOG/build.log"; echo "gpu-check: bench build failed"; }
echo "build: $(( $(date +%s) - t0 )) s"
timeout 420 make "${MK[@]}" -j16 test >"$LOG/test.log" 2>&1
test_rc=$?
grep -E "^  ok|FAIL|^test_|passed|skipped|^  [a-z_]+\[" "$LOG/test.log" | grep -v "^  ok" | tail -60
timeout 240 ./build-cuda/bench/cuda_bench >"$LOG/bench.log" 2>&1
timeout 120 ./build-cuda/mlxn graph --backend cuda --layers 16 >"$LOG/graph.log" 2>&1
timeout 60 ./build-cuda/mlxn graph --backend cpu --layers 2 --steps 3 >"$LOG/graph_cpu.log" 2>&1
# whole models: the synthetic Llama 3 8B shape (4-bit MLX, random weights),
# replayed graphs vs one submission per op; the default model if present
M8=synthetic:llama3-8b:q4:g64
timeout 240 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 3 >"$LOG/bench8b.log" 2>&1
MLXN_CU_BLAS=0 timeout 120 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 16 -r 2 >"$LOG/bench8b_noblas.log" 2>&1
timeout 120 ./build-cuda/mlxn bench -m $M8 --backend cuda -p 0 -n 64 -r 2 --mode direct >"$LOG/bench8b_direct.log" 2>&1
GGUF=models/SmolLM2-135M-Instruct.Q4_1.gguf
if [ -f "$GGUF" ]; then
  timeout 60 ./build-cuda/mlxn bench -m $GGUF --backend cuda -p 512 -n 128 -r 3 >"$LOG/bench_smollm2.log" 2>&1
  timeout 60 ./build-cuda/mlxn generate -m $GGUF --backend cuda --chat --temp 0 -n 32 \
    -p "What is the capital of France?" >"$LOG/generate_smollm2.log" 2>&1
fi
echo
echo "================ gpu-check summary ================"
echo "tests (make CUDA=1 test, exit $test_rc):"
grep -E "^test_[a-z_]+: [0-9]+ passed" "$LOG/test.log"
tail -1 "$LOG/test.log"
echo
cat "$LOG/bench.log"
echo
echo "graph demo (mlxn graph --backend cuda --layers 16):"
tail -8 "$LOG/graph.log"
echo
echo "synthetic Llama 3 8B, MLX 4-bit g64 (optimized + replay):"
tail -6 "$LOG/bench8b.log"
# prefill as a fraction of the bf16 GEMM rate of this run: per token, 2 x
# 6.979e9 matmul weights (32 layers x 218,103,808; the head runs on the last
# row only) + attention 4 x 32 heads x 128 x 256.5 mean positions x 32 layers
pp=$(awk '$1 == "pp" {print $3}' "$LOG/bench8b.log")
ref=$(grep -m1 "bf16 GEMM reference" "$LOG/bench.log" | sed 's/.*= \([0-9.]*\) TFLOP.*/\1/')
if [ -n "$pp" ] && [ -n "$ref" ]; then
  awk -v pp="$pp" -v ref="$ref" 'BEGIN { f = 2 * 6979321856 + 4 * 32 * 128 * 256.5 * 32;
    printf "pp512 %.0f tok/s = %.1f TFLOP/s = %.1f%% of the bf16 GEMM reference (%.1f TFLOP/s, M=512 N=14336 K=4096, same run)\n",
      pp, pp * f / 1e12, 100 * pp * f / 1e12 / ref, ref }'
fi
echo "same, prefill matmuls on the bf16 tile kernels (MLXN_CU_BLAS=0; attention as above):"
grep -E "^pp " "$LOG/bench8b_noblas.log"
echo "same, decode with one submission per op (--mode direct):"
tail -3 "$LOG/bench8b_direct.log"
if [ -f "$LOG/bench_smollm2.log" ]; then
  echo
  echo "SmolLM2-135M Q4_1 GGUF on CUDA:"
  tail -6 "$LOG/bench_smollm2.log"
  cat "$LOG/generate_smollm2.log"
fi
