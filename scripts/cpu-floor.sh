#!/bin/bash
# cpu-floor.sh [ROUNDS]: CPU decode of the default model against the
# bandwidth floor, in rounds of: read bandwidth (bench ops) / GGUF tg128 /
# MLX tg128 / read bandwidth, so each decode number has the machine's
# bandwidth of the same minute beside it (the dev VM changes regime).
# Floor tok/s = read GB/s / weight GB a token (96.6 MB GGUF, 98.4 MB MLX).
B=${B:-./build/mlxn}
G=models/SmolLM2-135M-Instruct.Q4_1.gguf
X=models/smollm2-135m-mlx
bw() { $B bench ops --rows 1 --formats q4_0 --shape 4096x4096 2>&1 | awk '/^read bandwidth \(2/{print $5; exit}'; }
tg() { $B bench -m $1 -p 64 -n 128 -r 3 2>&1 | awk '/^tg/{print $3}'; }
for r in $(seq ${1:-3}); do
  flock /tmp/mlxn-bench.lock bash -c "$(declare -f bw tg); B=$B; a=\$(bw); g=\$(tg $G); m=\$(tg $X); b=\$(bw);
    awk -v a=\$a -v b=\$b -v g=\$g -v m=\$m 'BEGIN{lo=(a<b?a:b); hi=(a>b?a:b);
      printf \"read %.1f / %.1f GB/s  GGUF tg128 %.1f (floor %.0f-%.0f: %.0f-%.0f %%)  MLX tg128 %.1f (floor %.0f-%.0f: %.0f-%.0f %%)\n\",
      a, b, g, lo/0.0966, hi/0.0966, 100*g*0.0966/hi, 100*g*0.0966/lo, m, lo/0.0984, hi/0.0984, 100*m*0.0984/hi, 100*m*0.0984/lo}'"
done
