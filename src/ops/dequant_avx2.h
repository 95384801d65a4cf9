/*
 * dequant_avx2.h — AVX2 + FMA + F16C row dequantizers and the dense dot
 * (internal, CPU). For x86 CPUs without AVX-512 (e.g. Zen 3): the callers in
 * matmul_cpu.c pick these when isa_now() says AVX2; the CPU must have
 * avx2, fma and f16c (the file is built without -mavx2, per-function
 * targets). On other architectures nothing is defined.
 */
#ifndef MLXN_OPS_DEQUANT_AVX2_H
#define MLXN_OPS_DEQUANT_AVX2_H

#include "ops/quant.h"

#if defined(__x86_64__) || defined(__i386__)
/* MLX row n, elements [k0,k1) (group-aligned) → out[0, k1-k0): bit-exact
 * with mlxn_mlx_dequant_row_ (any bits, group, scale dtype). Reads no byte
 * past the row's end. */
void mlxn_mlx_dequant_row_avx2(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1, float *out);

/* nb GGML blocks of t (elements for f16/bf16) → y: bit-exact with
 * mlxn_ggml_dequant_blocks_ for f16, bf16, q4_0, q4_1, q8_0, q4_k, q5_k,
 * q6_k (anything else writes nothing). */
void mlxn_ggml_dequant_avx2(mlxn_dtype t, const void *src, float *y, int64_t nb);

/* Σ_k w[k]·x[k] for a dense f16, bf16 or f32 row w of K elements (f32
 * FMAs, four accumulators: not the scalar summation order). */
float mlxn_dot_dense_avx2(mlxn_dtype t, const void *w, const float *x, int64_t K);
#endif

#endif
