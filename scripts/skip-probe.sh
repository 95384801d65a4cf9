#!/bin/bash
# skip-probe.sh: what each op class costs inside a replayed decode step
# (MLXN_CU_SKIP: those nodes launch nothing; tok/s of the rest)
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 || { tail -20 /tmp/b.log; exit 1; }
M8=${M8:-synthetic:llama3-8b:q4:g64}
for v in - rope,rope_kv_write,kv_write attention add_rms_norm,rms_norm silu_mul argmax matmul_mlx \
         rope,rope_kv_write,kv_write,attention,add_rms_norm,rms_norm,silu_mul,argmax,get_rows_mlx; do
  if [ "$v" = - ]; then e=(); else e=("MLXN_CU_SKIP=$v"); fi
  printf "%-80s " "skip ${v}"
  env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 2 2>&1 | grep -E "^tg" | awk '{printf "tg %s tok/s = %.3f ms\n", $3, 1000/$3}'
done
