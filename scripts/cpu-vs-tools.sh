#!/bin/bash
# cpu-vs-tools.sh [ROUNDS]: mlxn against llama.cpp's llama-bench and MLX's
# mlx_lm.benchmark on this machine's CPU, on the default model (the GGUF for
# llama.cpp, its converted MLX directory for MLX; mlxn on both), pp512 and
# tg128, with the read bandwidth of `mlxn bench ops` before and after each
# round (the dev VM changes regime). Everything under the bench lock.
#
# llama.cpp: the copy vendored in PyPI's llama-cpp-python sdist, as
# `scripts/gpu-vs-llamacpp.sh --prep` packs it into .lcpp/, built once
# (GGML_NATIVE, CPU only; ~10 min on 2 cores) under $W; MLX: `mlx[cpu]` and
# mlx-lm in a venv under $W (MLX's Linux CPU backend, not its Metal path).
# MLX=0 skips MLX (its CPU backend takes ~70 s a trial on the dev VM).
set -eu
cd "$(dirname "$0")/.."
W=${W:-/tmp/mlxn-vs}
B=./build/mlxn
G=models/SmolLM2-135M-Instruct.Q4_1.gguf
X=models/smollm2-135m-mlx
[ -x $B ] || make -j2 all >/dev/null
[ -f $G ] && [ -d $X ] || bash scripts/run-default.sh >/dev/null
mkdir -p $W
LB=$W/llama.cpp/build/bin/llama-bench
if [ ! -x $LB ]; then
  [ -f .lcpp/src.tar.xz ] || bash scripts/gpu-vs-llamacpp.sh --prep >/dev/null # the same sources as the GPU rows
  rm -rf $W/llama.cpp && tar xJf .lcpp/src.tar.xz -C $W
  (cd $W/llama.cpp && cmake -B build -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release \
      >/dev/null && cmake --build build --target llama-bench -j"$(nproc)" >/dev/null)
fi
if [ "${MLX:-1}" != 0 ] && [ ! -x $W/venv/bin/python ]; then
  python3 -m venv $W/venv && $W/venv/bin/pip install -q "mlx[cpu]" mlx-lm
fi
bw() { $B bench ops --rows 1 --formats q4_0 --shape 4096x4096 2>&1 | awk '/^read bandwidth \(/{print $5; exit}'; }
for r in $(seq ${1:-2}); do
  flock /tmp/mlxn-bench.lock bash -c "
    echo \"== round $r: read bandwidth \$($(declare -f bw); B=$B; bw) GB/s\"
    $LB -m $G -t $(nproc) -p 512 -n 128 -r 3 -o md 2>/dev/null | grep -E 'pp512|tg128' | sed 's/^/llama.cpp /'
    $B bench -m $G -p 512 -n 128 -r 3 2>&1 | grep -E '^(pp|tg)' | sed 's/^/mlxn GGUF /'
    if [ '${MLX:-1}' != 0 ]; then
      $W/venv/bin/python -m mlx_lm.benchmark --model $X -p 512 -g 128 -n 3 2>&1 | grep Averages | sed 's/^/mlx-lm /'
      $B bench -m $X -p 512 -n 128 -r 3 2>&1 | grep -E '^(pp|tg)' | sed 's/^/mlxn MLX /'
    fi
    echo \"   read bandwidth after: \$($(declare -f bw); B=$B; bw) GB/s\""
done
