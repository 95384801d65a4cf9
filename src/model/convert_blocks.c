/*
 * convert_blocks.c — GGML blocks to MLX affine groups, without loss.
 *
 * A q4_0 block of 32 is w = d*(q - 8): scale d, bias -8d (exact in f16:
 * multiplying by a power of two). q4_1: w = d*q + m: scale d, bias m. q8_0:
 * w = d*q with q signed: MLX stores q + 128 unsigned, bias -128d. q4_k and
 * q5_k super-blocks hold 8 sub-blocks of 32 with w = d*sc*q - dmin*m: scale
 * d*sc and bias -dmin*m, exact in f32 (an f16 times a 6-bit integer).
 * MLX packs element i of a row at bit offset i*bits of the row's little-
 * endian word stream.
 */
#include "model/convert.h"
#include "ops/quant.h"

#include <string.h>

bool mlxn_ggml_to_mlx_exact(mlxn_dtype t, int *bits, mlxn_dtype *sb_type) {
    switch (t) {
    case MLXN_Q4_0: case MLXN_Q4_1: *bits = 4; *sb_type = MLXN_F16; return true;
    case MLXN_Q8_0: *bits = 8; *sb_type = MLXN_F16; return true;
    case MLXN_Q4_K: *bits = 4; *sb_type = MLXN_F32; return true;
    case MLXN_Q5_K: *bits = 5; *sb_type = MLXN_F32; return true;
    default: return false;
    }
}

/* Write value q (bits wide) at element i of a row's word stream. */
static inline void put_bits(uint32_t *row, int64_t i, int bits, uint32_t q) {
    uint64_t bit = (uint64_t)i * (uint64_t)bits;
    uint64_t w = bit / 32, off = bit % 32;
    row[w] |= q << off;
    if (off + (uint64_t)bits > 32) row[w + 1] |= q >> (32 - off);
}

/* 6-bit scale and min j of a k-quant super-block (ggml's get_scale_min_k4). */
static void scale_min_k4(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) {
        *d = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *d = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
        *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
    }
}

static void put_sb(void *p, mlxn_dtype t, int64_t i, float v, uint16_t raw16, bool use_raw) {
    if (t == MLXN_F32) ((float *)p)[i] = v;
    else ((uint16_t *)p)[i] = use_raw ? raw16 : mlxn_f32_to_f16(v);
}

mlxn_status mlxn_ggml_to_mlx(mlxn_dtype t, const void *src, int64_t N, int64_t K, uint32_t *wq, void *scales,
                             void *biases) {
    int bits;
    mlxn_dtype sbt;
    if (!mlxn_ggml_to_mlx_exact(t, &bits, &sbt))
        return mlxn_err(MLXN_ERR_UNSUPPORTED, "convert: %s has no exact MLX affine form", mlxn_dtype_name(t));
    int64_t be = (int64_t)mlxn_dtype_block_elems(t);
    if (N <= 0 || K <= 0 || K % be)
        return mlxn_err(MLXN_ERR_SHAPE, "convert: K=%lld is not a multiple of %s's block of %lld", (long long)K,
                        mlxn_dtype_name(t), (long long)be);
    size_t bb = mlxn_dtype_block_bytes(t);
    int64_t words = K * bits / 32, groups = K / 32;
    memset(wq, 0, (size_t)(N * words) * 4);
    for (int64_t n = 0; n < N; n++) {
        const uint8_t *row = (const uint8_t *)src + (size_t)n * (size_t)(K / be) * bb;
        uint32_t *qrow = wq + n * words;
        for (int64_t b = 0; b < K / be; b++) {
            const uint8_t *blk = row + (size_t)b * bb;
            int64_t e0 = b * be, g0 = n * groups + e0 / 32;
            uint16_t d16, m16;
            memcpy(&d16, blk, 2);
            float d = mlxn_f16_to_f32(d16);
            switch (t) {
            case MLXN_Q4_0:
            case MLXN_Q4_1: {
                const uint8_t *qs = blk + (t == MLXN_Q4_0 ? 2 : 4);
                for (int j = 0; j < 16; j++) {
                    put_bits(qrow, e0 + j, 4, qs[j] & 0xF);
                    put_bits(qrow, e0 + j + 16, 4, qs[j] >> 4);
                }
                put_sb(scales, sbt, g0, d, d16, true);
                if (t == MLXN_Q4_0) put_sb(biases, sbt, g0, -8.0f * d, 0, false);
                else {
                    memcpy(&m16, blk + 2, 2);
                    put_sb(biases, sbt, g0, 0, m16, true);
                }
                break;
            }
            case MLXN_Q8_0: {
                const int8_t *qs = (const int8_t *)(blk + 2);
                for (int j = 0; j < 32; j++) put_bits(qrow, e0 + j, 8, (uint32_t)(qs[j] + 128));
                put_sb(scales, sbt, g0, d, d16, true);
                put_sb(biases, sbt, g0, -128.0f * d, 0, false);
                break;
            }
            case MLXN_Q4_K:
            case MLXN_Q5_K: {
                memcpy(&m16, blk + 2, 2);
                float dmin = mlxn_f16_to_f32(m16);
                const uint8_t *sc = blk + 4;
                const uint8_t *qh = t == MLXN_Q5_K ? blk + 16 : NULL;
                const uint8_t *qs = blk + (t == MLXN_Q5_K ? 48 : 16);
                for (int j = 0; j < 8; j++) {
                    uint8_t s6, m6;
                    scale_min_k4(j, sc, &s6, &m6);
                    put_sb(scales, sbt, g0 + j, d * (float)s6, 0, false);
                    put_sb(biases, sbt, g0 + j, -dmin * (float)m6, 0, false);
                    /* sub-blocks come in pairs over 32 bytes: low nibbles, then high */
                    const uint8_t *q = qs + (j / 2) * 32;
                    for (int l = 0; l < 32; l++) {
                        uint32_t v = (j % 2) ? (uint32_t)(q[l] >> 4) : (uint32_t)(q[l] & 0xF);
                        if (qh && (qh[l] & (1u << j))) v += 16;
                        put_bits(qrow, e0 + j * 32 + l, bits, v);
                    }
                }
                break;
            }
            default:
                break;
            }
        }
    }
    return MLXN_OK;
}

mlxn_status mlxn_unpermute_qk_rows(const void *src, void *dst, int64_t N, size_t row_bytes, int n_head) {
    if (n_head <= 0 || N % n_head || (N / n_head) % 2)
        return mlxn_err(MLXN_ERR_SHAPE, "convert: %lld rows do not split into %d heads of even size", (long long)N,
                        n_head);
    int64_t hd = N / n_head, half = hd / 2;
    /* GGUF row (h, i, p) with p in {0,1} came from HF row (h, p, i) */
    for (int64_t h = 0; h < n_head; h++)
        for (int64_t i = 0; i < half; i++)
            for (int p = 0; p < 2; p++) {
                int64_t g = h * hd + i * 2 + p, f = h * hd + p * half + i;
                memcpy((char *)dst + (size_t)f * row_bytes, (const char *)src + (size_t)g * row_bytes, row_bytes);
            }
    return MLXN_OK;
}
