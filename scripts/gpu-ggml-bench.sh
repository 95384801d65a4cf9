#!/bin/bash
# gpu-ggml-bench.sh: every CUDA and CPU test, then the synthetic Llama 3 8B
# in each GGML block type and MLX 4-bit g64 (decode tg128, prefill pp512),
# as a short table last.
source scripts/gpu-env.sh
make "${MK[@]}" -j16 all >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader
timeout 400 make "${MK[@]}" -j16 test > /tmp/t.log 2>&1; echo "make test rc=$?"
grep -E "FAIL" /tmp/t.log | head -10; grep -E "^test_(cuda|synthetic|graph)" /tmp/t.log; tail -1 /tmp/t.log
for t in q4:g64 q4_0 q4_1 q8_0 q4_k q5_k q6_k; do
  ./build-cuda/mlxn bench -m synthetic:llama3-8b:$t --backend cuda -p 512 -n 128 -r 3 > /tmp/g_$t.log 2>&1
  echo "$t | $(awk '$1=="pp"{printf "pp512 %s", $3} $1=="tg"{printf " | tg128 %s", $3}' /tmp/g_$t.log) | $(grep -o 'weights [0-9.]* MiB' /tmp/g_$t.log) | $(grep -o '[0-9]* kernel launches' /tmp/g_$t.log)"
done
