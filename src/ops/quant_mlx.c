/*
 * quant_mlx.c — MLX affine quantization: validation, quantize and dequantize,
 * bit-exact with mlx 0.32 (CPU). The formulas were checked against
 * mx.quantize / mx.dequantize for every bits × group × scale dtype; goldens
 * in tests/golden/quant/ come from scripts/gen_quant_goldens.py.
 *
 * Everything here is plain f32 arithmetic with no contraction (ISO C mode
 * keeps gcc from fusing; clang is told below), so the results are exact
 * replicas of MLX's, not approximations.
 */
#include "ops/quant.h"

#include <math.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static size_t sb_size(mlxn_dtype t) { return t == MLXN_F32 ? 4 : 2; }

mlxn_status mlxn_mlx_check(const char *what, int64_t N, int64_t K, int bits, int group,
                           mlxn_dtype sb_type) {
    if (bits != 2 && bits != 3 && bits != 4 && bits != 5 && bits != 6 && bits != 8)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: bits=%d not supported (2,3,4,5,6,8)", what,
                        bits);
    if (group != 32 && group != 64 && group != 128)
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "%s: group=%d not supported (32,64,128)", what,
                        group);
    if (N <= 0 || K <= 0)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: shape [%lld,%lld] must be positive", what,
                        (long long)N, (long long)K);
    if (K % group)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: K=%lld not divisible by group %d", what,
                        (long long)K, group);
    if (sb_type != MLXN_F32 && sb_type != MLXN_F16 && sb_type != MLXN_BF16)
        return mlxn_err(MLXN_ERR_DTYPE, "%s: scales/biases dtype %s not supported (f16,bf16,f32)",
                        what, mlxn_dtype_name(sb_type));
    return MLXN_OK;
}

mlxn_status mlxn_mlx_sizes(int64_t N, int64_t K, int bits, int group, mlxn_dtype sb_type,
                           size_t *w_bytes, size_t *sb_bytes) {
    mlxn_status s = mlxn_mlx_check("mlx sizes", N, K, bits, group, sb_type);
    if (s) return s;
    size_t nk, wb, sb;
    if (!mlxn_mul_ok((size_t)N, (size_t)K, &nk) || !mlxn_mul_ok(nk / 8, (size_t)bits, &wb) ||
        !mlxn_mul_ok(nk / (size_t)group, sb_size(sb_type), &sb))
        return mlxn_err(MLXN_ERR_RANGE, "mlx sizes: [%lld,%lld] overflows size_t", (long long)N,
                        (long long)K);
    /* K % 32 == 0 (group >= 32), so N*K*bits/8 is exact. */
    if (w_bytes) *w_bytes = wb;
    if (sb_bytes) *sb_bytes = sb;
    return MLXN_OK;
}

static inline float sb_load(const void *p, mlxn_dtype t, size_t i) {
    if (t == MLXN_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == MLXN_F16 ? mlxn_f16_to_f32(h) : mlxn_bf16_to_f32(h);
}
static inline void sb_store(void *p, mlxn_dtype t, size_t i, float v) {
    if (t == MLXN_F32)
        ((float *)p)[i] = v;
    else
        ((uint16_t *)p)[i] = t == MLXN_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
}
/* Round a float to the representable value of t (identity for f32). */
static inline float sb_round(mlxn_dtype t, float v) {
    if (t == MLXN_F16) return mlxn_f16_to_f32(mlxn_f32_to_f16(v));
    if (t == MLXN_BF16) return mlxn_bf16_to_f32(mlxn_f32_to_bf16(v));
    return v;
}

mlxn_status mlxn_mlx_quantize(const float *w, int64_t N, int64_t K, int bits, int group,
                              mlxn_dtype sb_type, uint32_t *wq, void *scales, void *biases) {
    if (!w || !wq || !scales || !biases)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "mlx quantize: NULL pointer argument");
    mlxn_status s = mlxn_mlx_check("mlx quantize", N, K, bits, group, sb_type);
    if (s) return s;
    const float n_bins = (float)((1 << bits) - 1);
    const float eps = 1e-7f;
    const int64_t words_per_row = K * bits / 32, groups_per_row = K / group;
    for (int64_t n = 0; n < N; n++) {
        uint32_t *row = wq + n * words_per_row;
        memset(row, 0, (size_t)words_per_row * 4);
        for (int64_t g = 0; g < groups_per_row; g++) {
            const float *v = w + n * K + g * group;
            float w_min = INFINITY, w_max = -INFINITY;
            for (int j = 0; j < group; j++) {
                w_max = fmaxf(w_max, v[j]);
                w_min = fminf(w_min, v[j]);
            }
            int mask = fabsf(w_min) > fabsf(w_max);
            float scale = fmaxf((w_max - w_min) / n_bins, eps);
            scale = mask ? scale : -scale;
            float edge = mask ? w_min : w_max;
            float q0 = rintf(edge / scale);
            float bias = 0;
            if (q0 != 0) {
                scale = edge / q0;
                bias = edge;
            }
            for (int j = 0; j < group; j++) {
                float q = rintf((v[j] - bias) / scale);
                q = fminf(fmaxf(q, 0.0f), n_bins);
                uint64_t bit = (uint64_t)(g * group + j) * (uint64_t)bits;
                uint64_t qv = (uint64_t)q << (bit & 31);
                row[bit >> 5] |= (uint32_t)qv;
                if ((bit & 31) + (uint64_t)bits > 32) row[(bit >> 5) + 1] |= (uint32_t)(qv >> 32);
            }
            sb_store(scales, sb_type, (size_t)(n * groups_per_row + g), scale);
            sb_store(biases, sb_type, (size_t)(n * groups_per_row + g), bias);
        }
    }
    return MLXN_OK;
}

/* q of element k in a packed row (bits straddle words for 3/5/6). */
static inline uint32_t mlx_q(const uint32_t *row, int64_t k, int bits) {
    uint64_t bit = (uint64_t)k * (uint64_t)bits;
    uint64_t lo = row[bit >> 5];
    uint32_t sh = (uint32_t)(bit & 31);
    if (sh + (uint32_t)bits > 32) lo |= (uint64_t)row[(bit >> 5) + 1] << 32;
    return (uint32_t)(lo >> sh) & ((1u << bits) - 1);
}

void mlxn_mlx_dequant_row_(const uint32_t *wq, const void *scales, const void *biases,
                           mlxn_dtype sb_type, int64_t K, int bits, int group, int64_t n,
                           int64_t k0, int64_t k1, float *out) {
    const uint32_t *row = wq + n * (K * bits / 32);
    const int64_t gpr = K / group;
    for (int64_t g0 = k0; g0 < k1; g0 += group) {
        size_t gi = (size_t)(n * gpr + g0 / group);
        float sc = sb_load(scales, sb_type, gi), bi = sb_load(biases, sb_type, gi);
        float *o = out + (g0 - k0);
        if (sb_type == MLXN_F32) {
            for (int j = 0; j < group; j++) o[j] = sc * (float)mlx_q(row, g0 + j, bits) + bi;
        } else {
            for (int j = 0; j < group; j++)
                o[j] = sb_round(sb_type, sb_round(sb_type, sc * (float)mlx_q(row, g0 + j, bits)) + bi);
        }
    }
}

mlxn_status mlxn_mlx_dequantize(const uint32_t *wq, const void *scales, const void *biases,
                                mlxn_dtype sb_type, int64_t N, int64_t K, int bits, int group,
                                float *out) {
    if (!wq || !scales || !biases || !out)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "mlx dequantize: NULL pointer argument");
    mlxn_status s = mlxn_mlx_check("mlx dequantize", N, K, bits, group, sb_type);
    if (s) return s;
    for (int64_t n = 0; n < N; n++)
        mlxn_mlx_dequant_row_(wq, scales, biases, sb_type, K, bits, group, n, 0, K, out + n * K);
    return MLXN_OK;
}
