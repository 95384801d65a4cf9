#!/bin/bash
# mm-probe.sh: on a GPU machine, `bench ops --backend cuda --rows 1` for
# FORMATS (default mlx-q4-g64) at each of SHAPES, ROUNDS rounds, the tree as
# it is against builds with nvcc defines (VARIANT="name:-DMACRO=V;..." as in
# att-check.sh; a measuring patch's macros, e.g. the k_mlx4g probe of
# bench/RESULTS.md 2026-11-30), builds alternated. Prints "build round:
# shape us/%copy ..." a line. Variants that change results are for
# measuring only: no tests run here.
source scripts/gpu-env.sh
BINS=(build-cuda)
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b.log 2>&1 &
IFS=';' read -r -a VARS <<<"${VARIANT:-}"
for var in "${VARS[@]}"; do
  [ -n "$var" ] || continue
  vn=${var%%:*} vd=${var#*:}
  NV="-O3 -std=c++17 -Xcompiler -fPIC -Iinclude -Isrc -gencode arch=compute_90,code=sm_90 --expt-relaxed-constexpr -lineinfo $vd"
  make "${MK[@]}" BUILD=build-$vn "NVCCFLAGS=$NV" -j16 build-$vn/mlxn >/tmp/b2-$vn.log 2>&1 &
  BINS+=(build-$vn)
done
wait
for b in "${BINS[@]}"; do
  [ -x $b/mlxn ] || { echo "$b did not build"; tail -30 /tmp/b.log /tmp/b2-${b#build-}.log 2>/dev/null; exit 1; }
done
nvidia-smi --query-gpu=name --format=csv,noheader
SH=(${SHAPES:-4096x4096 4096x14336 14336x4096 32000x4096})
for r in ${ROUNDS:-1 2}; do
  for b in "${BINS[@]}"; do
    line="$b r$r:"
    for sh in "${SH[@]}"; do
      u=$(timeout 90 ./$b/mlxn bench ops --backend cuda --rows 1 --formats ${FORMATS:-mlx-q4-g64} --shape $sh 2>&1 |
        awk -v f=${FORMATS:-mlx-q4-g64} '$1 == f && $2 == 1 {print $5 "us/" $8}')
      line="$line $sh ${u:-?}"
    done
    echo "$line"
  done
done
