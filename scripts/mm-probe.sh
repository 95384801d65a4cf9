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
make "${MK[@]}" -j16 build-cuda/mlxn >/tmp/b-build-cuda.log 2>&1 &
variant_builds mlxn || exit 1
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
