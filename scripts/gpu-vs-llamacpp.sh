#!/bin/bash
# gpu-vs-llamacpp.sh: mlxn against llama.cpp's llama-bench on one GPU, on
# the same GGUF files: Llama-3-8B-shaped files with random weights written
# by scripts/gen_synth_gguf.py (each type in $TYPES, default q4_0 q4_k; TYPES= for none), and
# the default model where models/ has it. pp512 and tg128, median of 3.
#
# The GPU machine has no package registry: first, here, run
#   bash scripts/gpu-vs-llamacpp.sh --prep
# which takes llama.cpp's sources from PyPI's llama-cpp-python sdist (the
# llama.cpp it vendors; its commit is printed), trims them to what a CUDA
# build of llama-bench needs and packs them into .lcpp/src.tar.xz (ignored;
# carry .lcpp to the device run with .gpudeps).
set -u
if [ "${1:-}" = --prep ]; then
  set -e
  t=$(mktemp -d)
  pip download llama-cpp-python --no-deps --no-binary :all: -d "$t" >/dev/null
  tar xzf "$t"/llama_cpp_python-*.tar.gz -C "$t"
  v=$(cd "$t" && ls -d llama_cpp_python-*/ | tr -d /)
  mkdir -p .lcpp
  x=()
  for d in models docs .git build benches media tests tools/ui gguf-py/tests; do x+=(--exclude="llama.cpp/$d"); done
  for b in sycl vulkan opencl cann musa metal webgpu hexagon; do x+=(--exclude="llama.cpp/ggml/src/ggml-$b"); done
  tar "${x[@]}" -cJf .lcpp/src.tar.xz -C "$t/$v/vendor" llama.cpp
  c=$(git -C "$t/$v/vendor/llama.cpp" log -1 --format="%h %cd" --date=short 2>/dev/null || true)
  echo "$v (llama.cpp ${c:-commit unknown})" > .lcpp/VERSION
  rm -rf "$t"
  echo "packed $(cat .lcpp/VERSION) into .lcpp/src.tar.xz ($(du -h .lcpp/src.tar.xz | cut -f1))"
  exit 0
fi
[ -f .lcpp/src.tar.xz ] || { echo "no .lcpp/src.tar.xz: run --prep here and carry .lcpp"; exit 1; }
source scripts/gpu-env.sh
L=/root/lcpp
s=$(date +%s)
if [ ! -x $L/llama.cpp/build/bin/llama-bench ]; then
  mkdir -p $L && tar xJf .lcpp/src.tar.xz -C $L
  (cd $L/llama.cpp && cmake -B build -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DGGML_NATIVE=ON \
      -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DCMAKE_BUILD_TYPE=Release >/tmp/lc-cmake.log 2>&1 &&
    cmake --build build --target llama-bench -j16 >/tmp/lc-build.log 2>&1) &
fi
make "${MK[@]}" -j8 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
wait
[ -x $L/llama.cpp/build/bin/llama-bench ] || { tail -20 /tmp/lc-cmake.log /tmp/lc-build.log; exit 1; }
echo "builds: $(( $(date +%s) - s )) s; llama.cpp from $(cat .lcpp/VERSION)"
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
mkdir -p /root/synth
rows=()
run_pair() { # file label
  local f=$1 lab=$2
  $L/llama.cpp/build/bin/llama-bench -m "$f" -ngl 99 -p 512 -n 128 -r 3 -o md > /tmp/lb.txt 2>/tmp/lb.err ||
    { tail -5 /tmp/lb.err; }
  cat /tmp/lb.txt
  local lpp=$(awk -F'|' '/pp512/{print $(NF-1)}' /tmp/lb.txt | awk '{print $1}')
  local ltg=$(awk -F'|' '/tg128/{print $(NF-1)}' /tmp/lb.txt | awk '{print $1}')
  ./build-cuda/mlxn bench -m "$f" --backend cuda -p 512 -n 128 -r 3 > /tmp/mb.txt 2>&1
  tail -4 /tmp/mb.txt
  local mpp=$(awk '$1=="pp"{print $3}' /tmp/mb.txt) mtg=$(awk '$1=="tg"{print $3}' /tmp/mb.txt)
  rows+=("$lab | $lpp | $mpp | $ltg | $mtg")
}
for t in ${TYPES-q4_0 q4_k}; do
  f=/root/synth/llama3-8b-$t.gguf
  [ -f $f ] || python3 scripts/gen_synth_gguf.py $f --shape llama3-8b --type $t
  run_pair $f "8B-shaped $t (random)"
  rm -f $f
done
G=models/SmolLM2-135M-Instruct.Q4_1.gguf
[ -f $G ] && run_pair $G "SmolLM2-135M Q4_1"
echo
echo "| GGUF file | llama.cpp pp512 | mlxn pp512 | llama.cpp tg128 | mlxn tg128 |"
echo "|---|---|---|---|---|"
for r in "${rows[@]}"; do echo "| $r |"; done
