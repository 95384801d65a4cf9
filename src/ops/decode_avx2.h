/* decode_avx2.h — few-row (decode) matmuls for x86 CPUs with AVX2 but no
 * AVX-512 (internal to src/ops): x quantized to int8 per 32 elements, the
 * weights read in their own format and multiplied in int8 (maddubs). */
#ifndef MLXN_OPS_DECODE_AVX2_H
#define MLXN_OPS_DECODE_AVX2_H

#include "ops/quant.h"

/* Rows of x below which mlxn_mm takes these kernels on an AVX2 CPU. */
#define MLXN_AVX2_DECODE_ROWS 4

/* How these kernels take x for w: 0 not served (f32 path), 1 int8 codes per
 * 32 elements, 2 int8 codes and their rounding residual at 1/128 of the step
 * (MLX weights unless w->int8_act). Needs a CPU with AVX2, FMA and
 * F16C (the caller checks AVX2 and FMA; such CPUs have F16C). */
int mlxn_dec_avx2_parts(const mlxn_qmat *w);
/* Scratch bytes for M rows of x of length K. */
size_t mlxn_dec_avx2_scratch(int64_t K, int64_t M);
/* y[m, n] for m < M, n in [n0, n1); mlxn_dec_avx2_parts(w) must be > 0. */
void mlxn_dec_avx2(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
                   void *scratch);

#endif
