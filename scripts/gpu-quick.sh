#!/bin/bash
# gpu-quick.sh: the CUDA tests (test_cuda_model in every capture mode), then
# the 8B decode in the default mode and its variants ($VARIANTS, "-" = none),
# then the device-sampling paths against host sampling.
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_model \
  build-cuda/tests/test_synthetic >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
nvidia-smi --query-gpu=name --format=csv,noheader
./build-cuda/tests/test_cuda_ops > /tmp/ops.log 2>&1; grep -E "FAIL|logsumexp|decode layer case" /tmp/ops.log | head -24; tail -1 /tmp/ops.log
for v in - MLXN_CU_GRAPH=dag MLXN_CU_GRAPH=lanes MLXN_CU_FUSE=0 MLXN_CU_GROUP=0; do
  [ "$v" = - ] && e=() || e=("$v")
  env "${e[@]}" ./build-cuda/tests/test_cuda_model > /tmp/m.log 2>&1; echo "[$v] $(grep -E "FAIL" /tmp/m.log | head -5) $(tail -1 /tmp/m.log)"
done
./build-cuda/tests/test_synthetic 2>&1 | tail -1
M8=${M8:-synthetic:llama3-8b:q4:g64}
for r in 1 2; do
  for v in ${VARIANTS:-- MLXN_CU_FUSE=0 MLXN_CU_GRAPH=dag}; do
    [ "$v" = - ] && e=() || e=(${v//,/ }) # A=1,B=2: both
    echo "== ${e[*]:-default}"
    /usr/bin/time -f "wall %e s" env "${e[@]}" ./build-cuda/mlxn bench -m $M8 --backend cuda -p 512 -n 128 -r 3 2>&1 | grep -E "^pp|^tg|wall|load"
  done
done
G="./build-cuda/mlxn generate -m $M8 --backend cuda --tokens 1,2,3,4 --seed 3 --ignore-eos"
for args in "-n 256 --temp 0.8 --top-k 40" "-n 256 --temp 0.8 --top-k 40 --repeat-penalty 1.1" "-n 256 --temp 0 --repeat-penalty 1.2" "-n 64 --top-k 0 --top-p 0.9 --min-p 0 --temp 0.8"; do
  for e in - MLXN_HOST_SAMPLING=1; do
    [ "$e" = - ] && ev=() || ev=("$e")
    env "${ev[@]}" $G $args > /tmp/g.out 2>/tmp/g.err
    echo "[$args] [$e] $(md5sum < /tmp/g.out | cut -c1-8) $(grep -E "generation|sampling" /tmp/g.err | tr '\n' ' ')"
  done
done
