/*
 * quant_ggml.c — GGML block formats: layouts (static_asserted sizes),
 * scalar dequantizers bit-exact with gguf-py (gguf.quants), and reference
 * quantizers (q4_0/q4_1/q8_0 byte-exact with gguf-py; q4_k/q6_k a simple
 * min/max scheme for round trips and synthetic weights).
 *
 * The dequantizers evaluate the same f32 expressions in the same order as
 * gguf-py's numpy code (e.g. q4_k: (d*sc)*q - dmin*m), with no contraction.
 */
#include "ops/quant.h"

#include <math.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static inline float h2f(uint16_t h) { return mlxn_f16_to_f32(h); }

/* q4_k / q5_k: 6-bit scale and min of sub-block j from the 12 packed bytes. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

void mlxn_ggml_dequant_blocks_(mlxn_dtype t, const void *src, float *y, int64_t nb) {
    switch (t) {
    case MLXN_F32: memcpy(y, src, (size_t)nb * 4); break;
    case MLXN_F16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < nb; i++) y[i] = h2f(h[i]);
    } break;
    case MLXN_BF16: {
        const uint16_t *h = src;
        for (int64_t i = 0; i < nb; i++) y[i] = mlxn_bf16_to_f32(h[i]);
    } break;
    case MLXN_Q4_0: {
        const mlxn_block_q4_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            float d = h2f(b[i].d);
            for (int l = 0; l < 16; l++) {
                y[l] = d * (float)((b[i].qs[l] & 0xF) - 8);
                y[l + 16] = d * (float)((b[i].qs[l] >> 4) - 8);
            }
        }
    } break;
    case MLXN_Q4_1: {
        const mlxn_block_q4_1 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            float d = h2f(b[i].d), m = h2f(b[i].m);
            for (int l = 0; l < 16; l++) {
                y[l] = d * (float)(b[i].qs[l] & 0xF) + m;
                y[l + 16] = d * (float)(b[i].qs[l] >> 4) + m;
            }
        }
    } break;
    case MLXN_Q8_0: {
        const mlxn_block_q8_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            float d = h2f(b[i].d);
            for (int l = 0; l < 32; l++) y[l] = d * (float)b[i].qs[l];
        }
    } break;
    case MLXN_Q4_K: {
        const mlxn_block_q4_k *b = src;
        for (int64_t i = 0; i < nb; i++) {
            float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
            const uint8_t *q = b[i].qs;
            for (int j = 0; j < 8; j += 2, q += 32) {
                uint8_t sc, m;
                scale_min_k4(j, b[i].scales, &sc, &m);
                float d1 = d * (float)sc, m1 = dmin * (float)m;
                scale_min_k4(j + 1, b[i].scales, &sc, &m);
                float d2 = d * (float)sc, m2 = dmin * (float)m;
                for (int l = 0; l < 32; l++) *y++ = d1 * (float)(q[l] & 0xF) - m1;
                for (int l = 0; l < 32; l++) *y++ = d2 * (float)(q[l] >> 4) - m2;
            }
        }
    } break;
    case MLXN_Q5_K: {
        const mlxn_block_q5_k *b = src;
        for (int64_t i = 0; i < nb; i++) {
            float d = h2f(b[i].d), dmin = h2f(b[i].dmin);
            const uint8_t *q = b[i].qs;
            for (int j = 0; j < 8; j += 2, q += 32) {
                uint8_t sc, m;
                scale_min_k4(j, b[i].scales, &sc, &m);
                float d1 = d * (float)sc, m1 = dmin * (float)m;
                scale_min_k4(j + 1, b[i].scales, &sc, &m);
                float d2 = d * (float)sc, m2 = dmin * (float)m;
                for (int l = 0; l < 32; l++)
                    *y++ = d1 * (float)((q[l] & 0xF) | (((b[i].qh[l] >> j) & 1) << 4)) - m1;
                for (int l = 0; l < 32; l++)
                    *y++ = d2 * (float)((q[l] >> 4) | (((b[i].qh[l] >> (j + 1)) & 1) << 4)) - m2;
            }
        }
    } break;
    case MLXN_Q6_K: {
        const mlxn_block_q6_k *b = src;
        for (int64_t i = 0; i < nb; i++) {
            float d = h2f(b[i].d);
            const uint8_t *ql = b[i].ql, *qh = b[i].qh;
            const int8_t *sc = b[i].scales;
            for (int h = 0; h < 2; h++, y += 128, ql += 64, qh += 32, sc += 8) {
                for (int l = 0; l < 32; l++) {
                    int is = l / 16;
                    int q1 = ((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
                    int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
                    int q3 = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
                    int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
                    y[l] = d * (float)sc[is] * (float)q1;
                    y[l + 32] = d * (float)sc[is + 2] * (float)q2;
                    y[l + 64] = d * (float)sc[is + 4] * (float)q3;
                    y[l + 96] = d * (float)sc[is + 6] * (float)q4;
                }
            }
        }
    } break;
    default: break;
    }
}

static mlxn_status check_type(const char *what, mlxn_dtype t, int64_t n) {
    switch (t) {
    case MLXN_F32: case MLXN_F16: case MLXN_BF16: case MLXN_Q4_0: case MLXN_Q4_1:
    case MLXN_Q8_0: case MLXN_Q4_K: case MLXN_Q5_K: case MLXN_Q6_K: break;
    default:
        return mlxn_err(MLXN_ERR_DTYPE, "%s: type %s is not a ggml weight type", what,
                        mlxn_dtype_name(t));
    }
    int64_t be = (int64_t)mlxn_dtype_block_elems(t);
    if (n < 0 || n % be)
        return mlxn_err(MLXN_ERR_SHAPE, "%s: %lld elements is not a multiple of the %s block (%lld)",
                        what, (long long)n, mlxn_dtype_name(t), (long long)be);
    return MLXN_OK;
}

mlxn_status mlxn_ggml_dequantize(mlxn_dtype t, const void *src, float *dst, int64_t n) {
    if (!src || !dst) return mlxn_err(MLXN_ERR_INVALID_ARG, "ggml dequantize: NULL pointer");
    mlxn_status s = check_type("ggml dequantize", t, n);
    if (s) return s;
    mlxn_ggml_dequant_blocks_(t, src, dst, n / (int64_t)mlxn_dtype_block_elems(t));
    return MLXN_OK;
}

/* gguf-py's np_roundf: round half away from zero, in f32. */
static inline float roundf_away(float v) { return roundf(v); }

static void quant_q8_0(const float *x, mlxn_block_q8_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0;
        for (int l = 0; l < 32; l++) amax = fmaxf(amax, fabsf(x[l]));
        float d = amax / 127.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = mlxn_f32_to_f16(d);
        for (int l = 0; l < 32; l++) b[i].qs[l] = (int8_t)roundf_away(x[l] * id);
    }
}

static void quant_q4_0(const float *x, mlxn_block_q4_0 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0, max = 0;
        for (int l = 0; l < 32; l++)
            if (fabsf(x[l]) > amax) {
                amax = fabsf(x[l]);
                max = x[l];
            }
        float d = max / -8.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = mlxn_f32_to_f16(d);
        for (int l = 0; l < 16; l++) {
            float a = truncf(x[l] * id + 8.5f), c = truncf(x[l + 16] * id + 8.5f);
            uint8_t qa = (uint8_t)(a > 15 ? 15 : a), qc = (uint8_t)(c > 15 ? 15 : c);
            b[i].qs[l] = (uint8_t)(qa | (qc << 4));
        }
    }
}

static void quant_q4_1(const float *x, mlxn_block_q4_1 *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float mn = x[0], mx = x[0];
        for (int l = 1; l < 32; l++) {
            mn = fminf(mn, x[l]);
            mx = fmaxf(mx, x[l]);
        }
        float d = (mx - mn) / 15.0f, id = d != 0 ? 1.0f / d : 0.0f;
        b[i].d = mlxn_f32_to_f16(d);
        b[i].m = mlxn_f32_to_f16(mn);
        for (int l = 0; l < 16; l++) {
            float a = truncf((x[l] - mn) * id + 0.5f), c = truncf((x[l + 16] - mn) * id + 0.5f);
            uint8_t qa = (uint8_t)(a > 15 ? 15 : a), qc = (uint8_t)(c > 15 ? 15 : c);
            b[i].qs[l] = (uint8_t)(qa | (qc << 4));
        }
    }
}

static inline int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

static void quant_q4_k(const float *x, mlxn_block_q4_k *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[8], mins[8], smax = 0, mmax = 0;
        for (int j = 0; j < 8; j++) {
            float mn = 0, mx = 0; /* min <= 0 so the offset is a subtraction */
            for (int l = 0; l < 32; l++) {
                mn = fminf(mn, x[32 * j + l]);
                mx = fmaxf(mx, x[32 * j + l]);
            }
            scale[j] = (mx - mn) / 15.0f;
            mins[j] = -mn;
            smax = fmaxf(smax, scale[j]);
            mmax = fmaxf(mmax, mins[j]);
        }
        float d = smax / 63.0f, dmin = mmax / 63.0f;
        b[i].d = mlxn_f32_to_f16(d);
        b[i].dmin = mlxn_f32_to_f16(dmin);
        d = h2f(b[i].d);
        dmin = h2f(b[i].dmin);
        uint8_t sc[8], m[8];
        for (int j = 0; j < 8; j++) {
            sc[j] = (uint8_t)(d > 0 ? clampi((int)lrintf(scale[j] / d), 0, 63) : 0);
            m[j] = (uint8_t)(dmin > 0 ? clampi((int)lrintf(mins[j] / dmin), 0, 63) : 0);
        }
        for (int j = 0; j < 4; j++) {
            b[i].scales[j] = (uint8_t)((sc[j] & 63) | ((sc[j + 4] >> 4) << 6));
            b[i].scales[j + 4] = (uint8_t)((m[j] & 63) | ((m[j + 4] >> 4) << 6));
            b[i].scales[j + 8] = (uint8_t)((sc[j + 4] & 0xF) | ((m[j + 4] & 0xF) << 4));
        }
        uint8_t q[256];
        for (int j = 0; j < 8; j++) {
            float ds = d * (float)sc[j], dm = dmin * (float)m[j];
            for (int l = 0; l < 32; l++)
                q[32 * j + l] =
                    (uint8_t)(ds > 0 ? clampi((int)lrintf((x[32 * j + l] + dm) / ds), 0, 15) : 0);
        }
        for (int c = 0; c < 4; c++)
            for (int l = 0; l < 32; l++)
                b[i].qs[32 * c + l] = (uint8_t)(q[64 * c + l] | (q[64 * c + 32 + l] << 4));
    }
}

static void quant_q6_k(const float *x, mlxn_block_q6_k *b, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, x += 256) {
        float scale[16], amax_all = 0;
        for (int j = 0; j < 16; j++) {
            float amax = 0;
            for (int l = 0; l < 16; l++) amax = fmaxf(amax, fabsf(x[16 * j + l]));
            scale[j] = amax / 31.0f;
            amax_all = fmaxf(amax_all, scale[j]);
        }
        float d = amax_all / 127.0f;
        b[i].d = mlxn_f32_to_f16(d);
        d = h2f(b[i].d);
        int8_t sc[16];
        uint8_t q[256];
        for (int j = 0; j < 16; j++) {
            sc[j] = (int8_t)(d > 0 ? clampi((int)lrintf(scale[j] / d), -128, 127) : 0);
            b[i].scales[j] = sc[j];
            float ds = d * (float)sc[j];
            for (int l = 0; l < 16; l++)
                q[16 * j + l] = (uint8_t)(
                    (ds != 0 ? clampi((int)lrintf(x[16 * j + l] / ds), -32, 31) : 0) + 32);
        }
        memset(b[i].qh, 0, 64);
        for (int h = 0; h < 2; h++) {
            uint8_t *ql = b[i].ql + 64 * h, *qh = b[i].qh + 32 * h;
            const uint8_t *qq = q + 128 * h;
            for (int l = 0; l < 32; l++) {
                ql[l] = (uint8_t)((qq[l] & 0xF) | ((qq[l + 64] & 0xF) << 4));
                ql[l + 32] = (uint8_t)((qq[l + 32] & 0xF) | ((qq[l + 96] & 0xF) << 4));
                qh[l] = (uint8_t)((qq[l] >> 4) | ((qq[l + 32] >> 4) << 2) |
                                  ((qq[l + 64] >> 4) << 4) | ((qq[l + 96] >> 4) << 6));
            }
        }
    }
}

mlxn_status mlxn_ggml_quantize(mlxn_dtype t, const float *src, void *dst, int64_t n) {
    if (!src || !dst) return mlxn_err(MLXN_ERR_INVALID_ARG, "ggml quantize: NULL pointer");
    mlxn_status s = check_type("ggml quantize", t, n);
    if (s) return s;
    int64_t nb = n / (int64_t)mlxn_dtype_block_elems(t);
    switch (t) {
    case MLXN_F32: memcpy(dst, src, (size_t)n * 4); break;
    case MLXN_F16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = mlxn_f32_to_f16(src[i]);
        break;
    case MLXN_BF16:
        for (int64_t i = 0; i < n; i++) ((uint16_t *)dst)[i] = mlxn_f32_to_bf16(src[i]);
        break;
    case MLXN_Q4_0: quant_q4_0(src, dst, nb); break;
    case MLXN_Q4_1: quant_q4_1(src, dst, nb); break;
    case MLXN_Q8_0: quant_q8_0(src, dst, nb); break;
    case MLXN_Q4_K: quant_q4_k(src, dst, nb); break;
    case MLXN_Q6_K: quant_q6_k(src, dst, nb); break;
    default:
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "ggml quantize: no quantizer for %s",
                        mlxn_dtype_name(t));
    }
    return MLXN_OK;
}
