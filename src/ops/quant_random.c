/*
 * quant_random.c — random weight matrices in any supported format, for tests
 * and benchmarks (mlxn_quant_make_random). Quantized formats get random codes
 * and random nonzero scales directly (no quantizer in the loop), so a
 * 4096×14336 matrix takes well under a second.
 */
#include "ops/quant.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static uint64_t rnd(uint64_t *s) { /* splitmix64 */
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
/* uniform in [lo, hi) */
static float rndf(uint64_t *s, float lo, float hi) {
    return lo + (hi - lo) * (float)(rnd(s) >> 40) * (1.0f / 16777216.0f);
}
static void fill_bytes(uint64_t *s, uint8_t *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v = rnd(s);
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++) p[i] = (uint8_t)rnd(s);
}
static void put16(uint8_t *p, uint16_t v) { memcpy(p, &v, 2); }

void mlxn_quant_free(mlxn_qweights *q) {
    if (!q) return;
    mlxn_free(q->data);
    mlxn_free(q->scales);
    mlxn_free(q->biases);
    memset(q, 0, sizeof *q);
}

static mlxn_status make_mlx(const char *format, int bits, int group, mlxn_dtype sbt, int64_t N,
                            int64_t K, uint64_t *s, mlxn_qweights *out) {
    size_t wb, sb;
    mlxn_status st = mlxn_mlx_sizes(N, K, bits, group, sbt, &wb, &sb);
    if (st) {
        mlxn_err_prefix("make_random '%s'", format);
        return st;
    }
    out->data = mlxn_malloc(wb);
    out->scales = mlxn_malloc(sb);
    out->biases = mlxn_malloc(sb);
    if (!out->data || !out->scales || !out->biases) {
        mlxn_quant_free(out);
        return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "make_random '%s': %zu bytes", format, wb + 2 * sb);
    }
    fill_bytes(s, out->data, wb);
    size_t ng = sb / (sbt == MLXN_F32 ? 4 : 2);
    float span = 2.0f / (float)((1 << bits) - 1); /* q·scale spans about [-1, 1] */
    for (size_t i = 0; i < ng; i++) {
        float sc = span * rndf(s, 0.5f, 1.0f), bi = -1.0f * rndf(s, 0.5f, 1.0f);
        if (sbt == MLXN_F32) {
            ((float *)out->scales)[i] = sc;
            ((float *)out->biases)[i] = bi;
        } else if (sbt == MLXN_F16) {
            ((uint16_t *)out->scales)[i] = mlxn_f32_to_f16(sc);
            ((uint16_t *)out->biases)[i] = mlxn_f32_to_f16(bi);
        } else {
            ((uint16_t *)out->scales)[i] = mlxn_f32_to_bf16(sc);
            ((uint16_t *)out->biases)[i] = mlxn_f32_to_bf16(bi);
        }
    }
    out->mat = (mlxn_qmat){.kind = MLXN_QKIND_MLX, .N = N, .K = K, .w = out->data,
                           .scales = out->scales, .biases = out->biases, .sb_type = sbt,
                           .bits = bits, .group = group};
    out->data_bytes = wb;
    out->sb_bytes = sb;
    out->total_bytes = wb + 2 * sb;
    return MLXN_OK;
}

static mlxn_status make_ggml(const char *format, mlxn_dtype t, int64_t N, int64_t K, uint64_t *s,
                             mlxn_qweights *out) {
    size_t rb, total;
    if (N <= 0 || K <= 0 || !mlxn_dtype_bytes_for(t, (uint64_t)K, &rb))
        return mlxn_err(MLXN_ERR_SHAPE, "make_random '%s': shape [%lld,%lld] (K must be a "
                        "positive multiple of %zu)", format, (long long)N, (long long)K,
                        mlxn_dtype_block_elems(t));
    if (!mlxn_mul_ok(rb, (size_t)N, &total))
        return mlxn_err(MLXN_ERR_RANGE, "make_random '%s': size overflows", format);
    uint8_t *p = mlxn_malloc(total);
    if (!p) return mlxn_err(MLXN_ERR_OUT_OF_MEMORY, "make_random '%s': %zu bytes", format, total);
    size_t nel = (size_t)N * (size_t)K;
    if (t == MLXN_F32) {
        for (size_t i = 0; i < nel; i++) ((float *)(void *)p)[i] = rndf(s, -1, 1);
    } else if (t == MLXN_F16 || t == MLXN_BF16) {
        for (size_t i = 0; i < nel; i++) {
            float v = rndf(s, -1, 1);
            ((uint16_t *)(void *)p)[i] = t == MLXN_F16 ? mlxn_f32_to_f16(v) : mlxn_f32_to_bf16(v);
        }
    } else {
        fill_bytes(s, p, total);
        size_t bb = mlxn_dtype_block_bytes(t), nb = total / bb;
        for (size_t i = 0; i < nb; i++) {
            uint8_t *b = p + i * bb;
            switch (t) {
            case MLXN_Q4_0: put16(b, mlxn_f32_to_f16(rndf(s, 0.06f, 0.12f))); break;
            case MLXN_Q8_0: put16(b, mlxn_f32_to_f16(rndf(s, 0.004f, 0.008f))); break;
            case MLXN_Q4_1:
                put16(b, mlxn_f32_to_f16(rndf(s, 0.06f, 0.12f)));
                put16(b + 2, mlxn_f32_to_f16(rndf(s, -1.0f, -0.5f)));
                break;
            case MLXN_Q4_K:
            case MLXN_Q5_K:
                put16(b, mlxn_f32_to_f16(rndf(s, 0.001f, 0.002f)));
                put16(b + 2, mlxn_f32_to_f16(rndf(s, 0.01f, 0.02f)));
                break;
            case MLXN_Q6_K: put16(b + 208, mlxn_f32_to_f16(rndf(s, 0.0003f, 0.0006f))); break;
            default: break;
            }
        }
    }
    out->data = p;
    out->mat = (mlxn_qmat){.kind = MLXN_QKIND_GGML, .N = N, .K = K, .w = p, .row_bytes = rb,
                           .wtype = t};
    out->data_bytes = out->total_bytes = total;
    return MLXN_OK;
}

mlxn_status mlxn_quant_make_random(const char *format, int64_t N, int64_t K, uint64_t seed,
                                   mlxn_qweights *out) {
    if (!out) return mlxn_err(MLXN_ERR_INVALID_ARG, "make_random: NULL out");
    memset(out, 0, sizeof *out);
    if (!format) return mlxn_err(MLXN_ERR_INVALID_ARG, "make_random: NULL format");
    uint64_t s = seed ^ 0x6D6C786E71756E74ull;
    mlxn_status st;
    if (strncmp(format, "mlx-", 4) == 0) {
        int bits = 0, group = 0, used = 0;
        char dt[8] = "bf16";
        if (sscanf(format, "mlx-q%d-g%d%n", &bits, &group, &used) < 2)
            return mlxn_err(MLXN_ERR_INVALID_ARG,
                            "make_random: format '%s' is not mlx-q<bits>-g<group>[-f16|-bf16|-f32]",
                            format);
        if (format[used] == '-') {
            snprintf(dt, sizeof dt, "%s", format + used + 1);
        } else if (format[used]) {
            return mlxn_err(MLXN_ERR_INVALID_ARG, "make_random: trailing '%s' in format '%s'",
                            format + used, format);
        }
        mlxn_dtype sbt;
        if (mlxn_dtype_from_name(&sbt, dt)) {
            return mlxn_err(MLXN_ERR_DTYPE, "make_random: scale dtype '%s' in '%s' unknown", dt,
                            format);
        }
        st = make_mlx(format, bits, group, sbt, N, K, &s, out);
    } else {
        mlxn_dtype t;
        if (mlxn_dtype_from_name(&t, format) ||
            !(t == MLXN_F32 || t == MLXN_F16 || t == MLXN_BF16 || t == MLXN_Q4_0 ||
              t == MLXN_Q4_1 || t == MLXN_Q8_0 || t == MLXN_Q4_K || t == MLXN_Q5_K ||
              t == MLXN_Q6_K))
            return mlxn_err(MLXN_ERR_INVALID_ARG, "make_random: unknown weight format '%s'",
                            format);
        st = make_ggml(format, t, N, K, &s, out);
    }
    if (st == MLXN_OK) snprintf(out->format, sizeof out->format, "%s", format);
    return st;
}
