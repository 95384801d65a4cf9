#!/bin/bash
# att-check.sh: decode attention's forms on a GPU machine. The CUDA op tests
# in each form of the cluster kernel (the vector form with 2 (default) / 4 /
# 1 query heads a block, MLXN_CU_ATT_HB; the scalar form, MLXN_CU_ATT_VEC=0), the
# model tests, then `bench ops`' attention line (position 4095 of an f16
# [8, 4096, 128] cache, 32 heads) and the 8B decode from an empty cache
# and after 4000 tokens (bench -d), each form in turn, two rounds.
# VARIANT="name:-DMACRO=V ..." also builds the tree with those nvcc defines
# in build-name (e.g. "u4:-DATTV_U=4") and measures it the same way; several
# such variants go separated by ';' ("fx0:-DATTV_FEXP=0;u4:-DATTV_U=4").
# FORMS: the environment forms tested; BFORMS: those measured (default FORMS).
# Every test and bench run has a time limit (a hung kernel shows as a
# line, not as the whole device call's time): print as you go, don't pipe
# this script through tail.
source scripts/gpu-env.sh
make "${MK[@]}" -j16 build-cuda/mlxn build-cuda/tests/test_cuda_ops build-cuda/tests/test_cuda_model >/tmp/b.log 2>&1 || { tail -30 /tmp/b.log; exit 1; }
BINS=(build-cuda)
variant_builds tests/test_cuda_ops mlxn || exit 1
nvidia-smi --query-gpu=name --format=csv,noheader
FORMS=(${FORMS:-- MLXN_CU_ATT_HB=4 MLXN_CU_ATT_HB=1 MLXN_CU_ATT_VEC=0})
for b in "${BINS[@]}"; do
  for v in "${FORMS[@]}"; do
    [ "$v" = - ] && e=() || e=("$v")
    env "${e[@]}" timeout 240 ./$b/tests/test_cuda_ops > /tmp/ops.log 2>&1
    rc=$?
    echo "ops $b [$v] $(grep -E "FAIL" /tmp/ops.log | head -8) $(tail -1 /tmp/ops.log)$([ $rc = 124 ] && echo " TIMED OUT")"
  done
done
timeout 240 ./build-cuda/tests/test_cuda_model > /tmp/m.log 2>&1; echo "model $(grep FAIL /tmp/m.log | head -5) $(tail -1 /tmp/m.log)"
M8=${M8:-synthetic:llama3-8b:q4:g64}
BF=(${BFORMS:-${FORMS[@]}})
for r in ${ROUNDS:-1 2}; do
  for b in "${BINS[@]}"; do
    for v in "${BF[@]}"; do
      [ "$v" = - ] && e=() || e=("$v")
      a=$(env "${e[@]}" timeout 90 ./$b/mlxn bench ops --backend cuda --rows 1 --formats q4_0 --shape 4096x4096 2>&1 | grep -E "^attention" | awk '{print $(NF-1)}')
      s=$(env "${e[@]}" timeout 90 ./$b/mlxn bench -m $M8 --backend cuda -p 0 -n 128 -r 3 2>&1 | grep -E "^tg" | awk '{print $3}')
      l=$(env "${e[@]}" timeout 120 ./$b/mlxn bench -m $M8 --backend cuda -p 0 -n 128 -r 3 -d 4000 2>&1 | grep -E "^tg" | awk '{print $3}')
      echo "$b [$v] attention@4095 $a us | tg128 $s | tg128@d4000 $l"
    done
  done
done
