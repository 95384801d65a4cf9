/*
 * dequant_avx2.c — row dequantizers (MLX affine, GGML blocks) and the dense
 * f16/bf16 dot for x86 CPUs with AVX2 + FMA + F16C but no AVX-512 (the
 * AVX-512 forms live in matmul_cpu.c). Without them such a CPU fell back
 * to the scalar dequantizers, whose software f16 rounding (four
 * conversions per MLX weight) made a 135M model decode at 0.2 tok/s.
 *
 * Bit-exact with quant_mlx.c / quant_ggml.c: the same f32 operations in
 * the same order, one rounding each, never fused (mul and add stay separate
 * intrinsics; gcc in ISO C mode does not contract, clang is told below).
 * f16 rounding is F16C's round trip, bf16 rounding the integer
 * round-to-nearest-even of mlxn_f32_to_bf16 (finite values; a NaN scale is
 * not a weight).
 *
 * The file is built without -mavx2: every function carries the target
 * attribute, and callers choose them only after checking the CPU.
 */
#include "ops/dequant_avx2.h"

#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* MLX dequantization must round exactly as MLX */
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "core/simd256.h"

#define TARGET __attribute__((target("avx2,fma,f16c")))
#define INLINE static inline __attribute__((always_inline))

/* ---- conversions ---- */

TARGET INLINE float bf2f(uint16_t h) {
    uint32_t u = (uint32_t)h << 16; /* bf16 is the top half of an f32 */
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* 8 f16 / bf16 / f32 values at p widened to f32 (exact). */
TARGET INLINE __m256 f16x8(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}
TARGET INLINE __m256 bf16x8(const uint16_t *p) {
    __m256i u = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(u, 16));
}
TARGET INLINE __m256 dense8(mlxn_dtype t, const void *w, int64_t k) {
    if (t == MLXN_F16) return f16x8((const uint16_t *)w + k);
    if (t == MLXN_BF16) return bf16x8((const uint16_t *)w + k);
    return _mm256_loadu_ps((const float *)w + k);
}
/* Low 8 bytes of v, unsigned, as 8 floats. */
TARGET INLINE __m256 u8x8_f(__m128i v) { return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v)); }
TARGET INLINE __m128i hi64(__m128i v) { return _mm_unpackhi_epi64(v, v); }

/* Round each lane to the scale dtype, as MLX's f16/bf16 arithmetic does.
 * bf16: add 0x7FFF plus the kept part's lowest bit, then cut the low half
 * (nearest, ties to even; the carry may bump the exponent, as it should). */
TARGET INLINE __m256 round_sb8(__m256 v, mlxn_dtype t) {
    if (t == MLXN_BF16) {
        __m256i u = _mm256_castps_si256(v);
        __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
        u = _mm256_add_epi32(u, _mm256_add_epi32(odd, _mm256_set1_epi32(0x7FFF)));
        return _mm256_castsi256_ps(_mm256_and_si256(u, _mm256_set1_epi32((int)0xFFFF0000u)));
    }
    if (t == MLXN_F16) return _mm256_cvtph_ps(_mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT));
    return v;
}

/* ---- MLX affine ---- */

/* round(round(s·q) + b) for 8 codes q (int32 lanes). */
TARGET INLINE __m256 affine(__m256i q, __m256 vs, __m256 vb, mlxn_dtype t) {
    __m256 r = _mm256_add_ps(round_sb8(_mm256_mul_ps(vs, _mm256_cvtepi32_ps(q)), t), vb);
    return round_sb8(r, t);
}
TARGET INLINE void affine8(float *o, __m256i q, __m256 vs, __m256 vb, mlxn_dtype t) {
    _mm256_storeu_ps(o, affine(q, vs, vb, t));
}

/* 4-bit group: 16 bytes hold 32 codes, element 2i in byte i's low nibble,
 * 2i+1 in its high one; interleaving the two nibble vectors restores the
 * element order. Loads stay inside the group's bytes. */
TARGET INLINE void group4(const uint8_t *p, int group, __m256 vs, __m256 vb, mlxn_dtype t,
                          float *o) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int j = 0; j < group; j += 32, p += 16, o += 32) {
        __m128i v = _mm_loadu_si128((const __m128i *)p);
        __m128i lo = _mm_and_si128(v, m4), hi = _mm_and_si128(_mm_srli_epi16(v, 4), m4);
        __m128i e0 = _mm_unpacklo_epi8(lo, hi), e1 = _mm_unpackhi_epi8(lo, hi);
        affine8(o, _mm256_cvtepu8_epi32(e0), vs, vb, t);
        affine8(o + 8, _mm256_cvtepu8_epi32(hi64(e0)), vs, vb, t);
        affine8(o + 16, _mm256_cvtepu8_epi32(e1), vs, vb, t);
        affine8(o + 24, _mm256_cvtepu8_epi32(hi64(e1)), vs, vb, t);
    }
}

/* 8-bit group: one byte per code, 8-byte loads. */
TARGET INLINE void group8(const uint8_t *p, int group, __m256 vs, __m256 vb, mlxn_dtype t,
                          float *o) {
    for (int j = 0; j < group; j += 8)
        affine8(o + j, _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + j))), vs, vb, t);
}

/* Any width: 16 codes (2·bits bytes from a byte boundary) per step. The
 * tables give, per 32-bit lane of two vectors (codes 0-7 and 8-15), the
 * byte shuffle that brings its (at most two) source bytes down (0x80
 * zeroes the rest) and the right shift that then aligns the code. The raw
 * 16 bytes sit in both 128-bit halves, as VPSHUFB shuffles within halves. */
typedef struct unpack_tab {
    __m256i idx[2], sh[2], mask;
} unpack_tab;

TARGET static void unpack_tables(int bits, unpack_tab *u) {
    uint8_t idx[2][32];
    uint32_t sh[2][8];
    for (int i = 0; i < 16; i++) {
        int b0 = i * bits / 8, v = i / 8, l = i % 8;
        idx[v][4 * l] = (uint8_t)b0;
        idx[v][4 * l + 1] = (uint8_t)(b0 + 1 < 16 ? b0 + 1 : 0x80);
        idx[v][4 * l + 2] = idx[v][4 * l + 3] = 0x80;
        sh[v][l] = (uint32_t)(i * bits % 8);
    }
    for (int v = 0; v < 2; v++) {
        u->idx[v] = _mm256_loadu_si256((const __m256i *)idx[v]);
        u->sh[v] = _mm256_loadu_si256((const __m256i *)sh[v]);
    }
    u->mask = _mm256_set1_epi32((1 << bits) - 1);
}

/* 16 bytes of the row from off; near the row's end only the 2·bits bytes
 * the step needs are copied (the weight buffer may end there). */
TARGET INLINE __m128i load_codes(const uint8_t *row, size_t off, size_t rowb, int bits) {
    if (off + 16 <= rowb) return _mm_loadu_si128((const __m128i *)(row + off));
    uint8_t b[16] = {0};
    memcpy(b, row + off, (size_t)(2 * bits));
    return _mm_loadu_si128((const __m128i *)b);
}

TARGET INLINE void groupn(const uint8_t *row, size_t rowb, int64_t g0, int group, int bits,
                          const unpack_tab *u, __m256 vs, __m256 vb, mlxn_dtype t, float *o) {
    for (int64_t k = g0; k < g0 + group; k += 16, o += 16) {
        __m256i raw = _mm256_broadcastsi128_si256(load_codes(row, (size_t)(k / 8 * bits), rowb, bits));
        for (int v = 0; v < 2; v++) {
            __m256i q = _mm256_shuffle_epi8(raw, u->idx[v]);
            q = _mm256_and_si256(_mm256_srlv_epi32(q, u->sh[v]), u->mask);
            affine8(o + 8 * v, q, vs, vb, t);
        }
    }
}

TARGET INLINE float sb_get(const void *p, mlxn_dtype t, size_t i) {
    if (t == MLXN_F32) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == MLXN_F16 ? mlxn_h2f_f16c(h) : bf2f(h);
}

/* The row loop, inlined once per scale dtype so the rounding is fixed. */
TARGET INLINE void mlx_row(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1, float *out,
                           mlxn_dtype t) {
    const int bits = w->bits, group = w->group;
    const int64_t G = w->K / group;
    const size_t rowb = (size_t)(w->K / 8 * bits);
    const uint8_t *row = (const uint8_t *)w->w + (size_t)n * rowb;
    unpack_tab u;
    if (bits != 4 && bits != 8) unpack_tables(bits, &u);
    size_t gi = (size_t)(n * G + k0 / group); /* one division a row, not one a group */
    for (int64_t g0 = k0; g0 < k1; g0 += group, gi++) {
        __m256 vs = _mm256_set1_ps(sb_get(w->scales, t, gi));
        __m256 vb = _mm256_set1_ps(sb_get(w->biases, t, gi));
        float *o = out + (g0 - k0);
        if (bits == 4)
            group4(row + g0 / 2, group, vs, vb, t, o);
        else if (bits == 8)
            group8(row + g0, group, vs, vb, t, o);
        else
            groupn(row, rowb, g0, group, bits, &u, vs, vb, t, o);
    }
}

TARGET void mlxn_mlx_dequant_row_avx2(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1,
                                      float *out) {
    switch (w->sb_type) {
    case MLXN_F16: mlx_row(w, n, k0, k1, out, MLXN_F16); break;
    case MLXN_BF16: mlx_row(w, n, k0, k1, out, MLXN_BF16); break;
    default: mlx_row(w, n, k0, k1, out, MLXN_F32); break;
    }
}

/* ---- GGML blocks ---- */


TARGET static void dq_f16(const uint16_t *h, float *y, int64_t nb, bool bf) {
    int64_t i = 0;
    for (; i + 8 <= nb; i += 8) _mm256_storeu_ps(y + i, bf ? bf16x8(h + i) : f16x8(h + i));
    for (; i < nb; i++) y[i] = bf ? bf2f(h[i]) : mlxn_h2f_f16c(h[i]);
}

/* q4_0: d·(q - 8); (q - 8) is exact in f32, so subtracting after the
 * conversion gives the scalar's value. q4_1: d·q + m. Nibbles: element l
 * low, l + 16 high. */
TARGET static void dq_q4_0(const mlxn_block_q4_0 *b, float *y, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    const __m256 c8 = _mm256_set1_ps(8.0f);
    for (int64_t i = 0; i < nb; i++, y += 32) {
        __m256 d = _mm256_set1_ps(mlxn_h2f_f16c(b[i].d));
        __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
        __m128i q[2] = {_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4)};
        for (int h = 0; h < 2; h++) {
            _mm256_storeu_ps(y + 16 * h, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_f(q[h]), c8)));
            _mm256_storeu_ps(y + 16 * h + 8, _mm256_mul_ps(d, _mm256_sub_ps(u8x8_f(hi64(q[h])), c8)));
        }
    }
}

TARGET static void dq_q4_1(const mlxn_block_q4_1 *b, float *y, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int64_t i = 0; i < nb; i++, y += 32) {
        __m256 d = _mm256_set1_ps(mlxn_h2f_f16c(b[i].d)), m = _mm256_set1_ps(mlxn_h2f_f16c(b[i].m));
        __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
        __m128i q[2] = {_mm_and_si128(v, m4), _mm_and_si128(_mm_srli_epi16(v, 4), m4)};
        for (int h = 0; h < 2; h++) {
            _mm256_storeu_ps(y + 16 * h, _mm256_add_ps(_mm256_mul_ps(d, u8x8_f(q[h])), m));
            _mm256_storeu_ps(y + 16 * h + 8, _mm256_add_ps(_mm256_mul_ps(d, u8x8_f(hi64(q[h]))), m));
        }
    }
}

TARGET static void dq_q8_0(const mlxn_block_q8_0 *b, float *y, int64_t nb) {
    for (int64_t i = 0; i < nb; i++, y += 32) {
        __m256 d = _mm256_set1_ps(mlxn_h2f_f16c(b[i].d));
        for (int j = 0; j < 32; j += 8) {
            __m128i v = _mm_loadl_epi64((const __m128i *)(b[i].qs + j));
            _mm256_storeu_ps(y + j, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(v))));
        }
    }
}

/* q4_k / q5_k sub-block j (32 elements): (d·sc_j)·q - dmin·m_j, q the
 * nibble (low for even j, high for odd) plus, for q5_k, bit j of qh as
 * bit 4. */
TARGET INLINE void k_sub(const uint8_t *qs, const uint8_t *qh, int j, __m256 dj, __m256 mj,
                         float *y) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    for (int h = 0; h < 2; h++) {
        __m128i v = _mm_loadu_si128((const __m128i *)(qs + 32 * (j / 2) + 16 * h));
        __m128i q = (j & 1) ? _mm_and_si128(_mm_srli_epi16(v, 4), m4) : _mm_and_si128(v, m4);
        if (qh) {
            __m128i hv = _mm_loadu_si128((const __m128i *)(qh + 16 * h));
            __m128i hb = _mm_and_si128(_mm_srl_epi16(hv, _mm_cvtsi32_si128(j)), _mm_set1_epi8(1));
            q = _mm_or_si128(q, _mm_slli_epi16(hb, 4));
        }
        _mm256_storeu_ps(y + 16 * h, _mm256_sub_ps(_mm256_mul_ps(dj, u8x8_f(q)), mj));
        _mm256_storeu_ps(y + 16 * h + 8, _mm256_sub_ps(_mm256_mul_ps(dj, u8x8_f(hi64(q))), mj));
    }
}

TARGET static void dq_k45(const uint8_t *p, float *y, int64_t nb, bool five) {
    const size_t bs = five ? sizeof(mlxn_block_q5_k) : sizeof(mlxn_block_q4_k);
    for (int64_t i = 0; i < nb; i++, p += bs, y += 256) {
        const uint8_t *qh = five ? p + 16 : NULL, *qs = five ? p + 48 : p + 16;
        uint16_t hd, hm;
        memcpy(&hd, p, 2);
        memcpy(&hm, p + 2, 2);
        float d = mlxn_h2f_f16c(hd), dmin = mlxn_h2f_f16c(hm);
        uint32_t u[4];
        mlxn_k4_unpack(p + 4, u);
        const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
        for (int j = 0; j < 8; j++)
            k_sub(qs, qh, j, _mm256_set1_ps(d * (float)sc[j]), _mm256_set1_ps(dmin * (float)mn[j]),
                  y + 32 * j);
    }
}

/* q6_k: (d·sc)·(q - 32), q = 4 low bits from ql | 2 high bits from qh.
 * Per half super-block (128 elements) and 16 l: the four 32-apart element
 * groups g take ql[l] / ql[l+32] low or high nibbles and qh bits 2g, 2g+1. */
TARGET static void dq_q6_k(const mlxn_block_q6_k *b, float *y, int64_t nb) {
    const __m256i c32 = _mm256_set1_epi32(32);
    for (int64_t i = 0; i < nb; i++) {
        float d = mlxn_h2f_f16c(b[i].d);
        for (int hf = 0; hf < 2; hf++, y += 128) {
            const uint8_t *ql = b[i].ql + 64 * hf, *qh = b[i].qh + 32 * hf;
            const int8_t *sc = b[i].scales + 8 * hf;
            for (int l0 = 0; l0 < 32; l0 += 16) {
                __m128i q[4];
                mlxn_q6k_codes16(ql, qh, l0, q);
                int is = l0 / 16;
                for (int g = 0; g < 4; g++) {
                    __m256 ds = _mm256_set1_ps(d * (float)sc[is + 2 * g]);
                    for (int e = 0; e < 2; e++) {
                        __m128i qe = e ? hi64(q[g]) : q[g];
                        __m256 qf = _mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(qe), c32));
                        _mm256_storeu_ps(y + 32 * g + l0 + 8 * e, _mm256_mul_ps(ds, qf));
                    }
                }
            }
        }
    }
}

TARGET void mlxn_ggml_dequant_avx2(mlxn_dtype t, const void *src, float *y, int64_t nb) {
    switch (t) {
    case MLXN_F16: dq_f16(src, y, nb, false); break;
    case MLXN_BF16: dq_f16(src, y, nb, true); break;
    case MLXN_Q4_0: dq_q4_0(src, y, nb); break;
    case MLXN_Q4_1: dq_q4_1(src, y, nb); break;
    case MLXN_Q8_0: dq_q8_0(src, y, nb); break;
    case MLXN_Q4_K: dq_k45(src, y, nb, false); break;
    case MLXN_Q5_K: dq_k45(src, y, nb, true); break;
    case MLXN_Q6_K: dq_q6_k(src, y, nb); break;
    default: break;
    }
}

/* ---- dense dot ---- */


/* Four accumulators: FMA latency (4 cycles on Zen 3) times its two ports
 * wants several chains in flight; fewer would leave the dot latency-bound. */
TARGET INLINE float dot_t(mlxn_dtype t, const void *w, const float *x, int64_t K) {
    __m256 s0 = _mm256_setzero_ps(), s1 = s0, s2 = s0, s3 = s0;
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        s0 = _mm256_fmadd_ps(dense8(t, w, k), _mm256_loadu_ps(x + k), s0);
        s1 = _mm256_fmadd_ps(dense8(t, w, k + 8), _mm256_loadu_ps(x + k + 8), s1);
        s2 = _mm256_fmadd_ps(dense8(t, w, k + 16), _mm256_loadu_ps(x + k + 16), s2);
        s3 = _mm256_fmadd_ps(dense8(t, w, k + 24), _mm256_loadu_ps(x + k + 24), s3);
    }
    for (; k + 8 <= K; k += 8) s0 = _mm256_fmadd_ps(dense8(t, w, k), _mm256_loadu_ps(x + k), s0);
    float r = mlxn_hsum_256(_mm256_add_ps(_mm256_add_ps(s0, s1), _mm256_add_ps(s2, s3)));
    for (; k < K; k++) {
        const uint16_t *h = w;
        float wk = t == MLXN_F16 ? mlxn_h2f_f16c(h[k]) : t == MLXN_BF16 ? bf2f(h[k]) : ((const float *)w)[k];
        r += wk * x[k];
    }
    return r;
}

TARGET float mlxn_dot_dense_avx2(mlxn_dtype t, const void *w, const float *x, int64_t K) {
    switch (t) {
    case MLXN_F16: return dot_t(MLXN_F16, w, x, K);
    case MLXN_BF16: return dot_t(MLXN_BF16, w, x, K);
    default: return dot_t(MLXN_F32, w, x, K);
    }
}

#else
typedef int mlxn_dequant_avx2_unused; /* ISO C wants a non-empty file */
#endif
