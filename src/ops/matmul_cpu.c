/*
 * matmul_cpu.c — y[M,N] = x[M,K]·Wᵀ for W in any mlxn_qmat format, on
 * columns [n0,n1) (the caller splits N across threads).
 *
 * Paths (chosen at run time, see mlxn_mm):
 *  - decode (M < MLXN_MM_DECODE_ROWS), quantized W, AVX-512 VNNI: each x row
 *    is quantized once per call to int8 blocks of 32 (d = max|x|/127, like
 *    llama.cpp's q8) in the code order the format stores its nibbles, and
 *    every weight row is dotted with VPDPBUSD (u8 codes × s8 x) against all
 *    x rows while it sits in L1. Offsets (q4_0's -8, q6_k's -32, q8_0's
 *    sign) come from per-block code sums; so do q4_1's m, the K-quants' min
 *    and MLX's bias: Σ_k x_k(s·q_k + b) = s·Σ x_k q_k + b·Σ x_k with Σ x_k
 *    the sum of the rounded x (dx·Σ codes), as llama.cpp's q8_1 and our
 *    CUDA kernels take it: the result's error is then Σ_k w_k·e_k (e_k the
 *    rounding of x_k) instead of Σ_k s·q_k·e_k, which for weights around
 *    zero (b ~ -7.5 s at 4 bits) is ~2x the RMS (measured, dev EPYC, MLX
 *    4-bit g64 quantized from Gaussian weights, 2048 x 4096: NMSE against
 *    double 2.1e-4 -> 4.9e-5; 8-bit 1.9e-4 -> 5.3e-5). MLX 2/3/5/6-bit
 *    do the same with codes unpacked 64 at a time by VBMI byte permutes and
 *    multishifts; without VBMI they take the AVX2 int16 kernels
 *    (decode_avx2.c; MLXN_MLXB=f32: f32 x, codes unpacked 16 at a time).
 *    Any K (a multiple of 32): 64-byte steps, then one shorter step for the
 *    last 1-3 blocks (SmolLM2's K = 576 = 4·128 + 64). MLX 4/8-bit and
 *    q4_0/q4_1 take 4 weight rows per step of the row loop, with one 4-way
 *    reduction.
 *  - decode on AVX2 without AVX-512 (M < 4), q4_0 / q4_1 / q8_0 / K-quants and
 *    MLX 4/8-bit: decode_avx2.c, the same int8 x with VPMADDUBSW products.
 *  - other decode without VNNI (M < 4), or dense f32/f16/bf16 W: f32 dot products
 *    (dense rows converted on the fly, others dequantized once per row).
 *  - otherwise (prefill), AVX-512 and M >= 32 or a bf16 path: gemm_blocked.
 *    Per 512 x rows, 1024 columns and k chunk, x is packed once into 12-row
 *    micro-panels, each 32-column W tile is dequantized (bit-exact) once into
 *    a packed panel (16×16 register transposes), and a 12×32 register-blocked
 *    kernel runs every 12 rows over it. Quantized W without f32_act on
 *    AVX512-BF16: x and panel rounded to bf16, VDPBF16PS (twice the f32 FMA
 *    rate); otherwise f32 FMAs. AVX2: gemm_avx2, the same blocking with x
 *    packed per 6 rows and each 32-column panel run as two 16-column halves
 *    by a 6×16 kernel. Else (scalar, AVX-512 below 32 rows): the same panels
 *    per 32-column tile and 256-deep chunk with a 6-row kernel (6×32
 *    AVX-512 or loops) reading x in place.
 * The row dequantizers used here (mlxn_qmat_dequant_row) are vectorized
 * but bit-exact with quant_mlx.c / quant_ggml.c (tested).
 *
 * Build switches for measuring (-D..., e.g. `make BUILD=/tmp/x
 * EXTRA_CFLAGS=-DK4_SINGLE`): the PF_* prefetch distances and hint below;
 * MLX_SPAN_GENERAL, Q8_DOT_PAIRS, K4_SINGLE and Q4X4_SCALES_PER_STEP bring
 * back the one-row loops that this file had before their faster forms
 * (MLX 4/8-bit spans unrolled, q8_0 four blocks a step, q4_k / q5_k and
 * q4_0 / q4_1 two super-blocks / steps at once; bench/RESULTS.md, session
 * of 02:52).
 */
#include "ops/quant.h"
#include "ops/decode_avx2.h"
#include "ops/dequant_avx2.h"
#include "core/simd256.h"
#include "core/simd512.h"

#include <math.h>
#include <stddef.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF /* MLX dequantization must round exactly as MLX */
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define MLXN_X86 1
#endif

#define TARGET_512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,f16c,fma")))
/* + VBMI (byte permutes and multishifts): MLX 2/3/5/6-bit decode */
#define TARGET_512V __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx512vbmi,f16c,fma")))
#define TARGET_AVX2 __attribute__((target("avx2,fma,f16c")))
#define ALWAYS_INLINE __attribute__((always_inline))

/* ------------------------------------------------------------------------ */
/* Descriptor, row dequantization, reference                                 */
/* ------------------------------------------------------------------------ */

static bool ggml_wtype(mlxn_dtype t) {
    switch (t) {
    case MLXN_F32: case MLXN_F16: case MLXN_BF16: case MLXN_Q4_0: case MLXN_Q4_1:
    case MLXN_Q8_0: case MLXN_Q4_K: case MLXN_Q5_K: case MLXN_Q6_K: return true;
    default: return false;
    }
}

mlxn_status mlxn_qmat_check(const mlxn_qmat *w) {
    if (!w || !w->w) return mlxn_err(MLXN_ERR_INVALID_ARG, "qmat: NULL matrix or weight pointer");
    if (w->kind == MLXN_QKIND_MLX) {
        if (!w->scales || !w->biases)
            return mlxn_err(MLXN_ERR_INVALID_ARG, "qmat: MLX matrix without scales/biases");
        return mlxn_mlx_check("qmat", w->N, w->K, w->bits, w->group, w->sb_type);
    }
    if (w->kind != MLXN_QKIND_GGML)
        return mlxn_err(MLXN_ERR_INVALID_ARG, "qmat: kind %d unknown", (int)w->kind);
    if (!ggml_wtype(w->wtype))
        return mlxn_err(MLXN_ERR_DTYPE, "qmat: %s is not a weight type", mlxn_dtype_name(w->wtype));
    if (w->N <= 0 || w->K <= 0)
        return mlxn_err(MLXN_ERR_SHAPE, "qmat: shape [%lld,%lld] must be positive",
                        (long long)w->N, (long long)w->K);
    size_t rb;
    if (!mlxn_dtype_bytes_for(w->wtype, (uint64_t)w->K, &rb))
        return mlxn_err(MLXN_ERR_SHAPE, "qmat: K=%lld not a multiple of the %s block (%zu)",
                        (long long)w->K, mlxn_dtype_name(w->wtype),
                        mlxn_dtype_block_elems(w->wtype));
    if (w->row_bytes < rb)
        return mlxn_err(MLXN_ERR_SHAPE, "qmat: row_bytes %zu < %zu needed for K=%lld of %s",
                        w->row_bytes, rb, (long long)w->K, mlxn_dtype_name(w->wtype));
    return MLXN_OK;
}

static inline const uint8_t *ggml_row(const mlxn_qmat *w, int64_t n) {
    return (const uint8_t *)w->w + (size_t)n * w->row_bytes;
}

static void dequant_row_scalar(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1,
                               float *out) {
    if (w->kind == MLXN_QKIND_MLX) {
        mlxn_mlx_dequant_row_(w->w, w->scales, w->biases, w->sb_type, w->K, w->bits, w->group, n,
                              k0, k1, out);
    } else {
        size_t be = mlxn_dtype_block_elems(w->wtype), bb = mlxn_dtype_block_bytes(w->wtype);
        mlxn_ggml_dequant_blocks_(w->wtype, ggml_row(w, n) + (size_t)k0 / be * bb, out,
                                  (k1 - k0) / (int64_t)be);
    }
}

void mlxn_mm_ref(const mlxn_qmat *w, const float *x, double *y, int64_t M, int64_t n0,
                 int64_t n1) {
    float *row = mlxn_malloc((size_t)w->K * sizeof(float));
    if (!row) return;
    for (int64_t n = n0; n < n1; n++) {
        dequant_row_scalar(w, n, 0, w->K, row);
        for (int64_t m = 0; m < M; m++) {
            double s = 0;
            for (int64_t k = 0; k < w->K; k++) s += (double)x[m * w->K + k] * (double)row[k];
            y[m * w->N + n] = s;
        }
    }
    mlxn_free(row);
}

/* ------------------------------------------------------------------------ */
/* ISA selection                                                              */
/* ------------------------------------------------------------------------ */

enum { ISA_SCALAR = 0, ISA_AVX2 = 1, ISA_512 = 2 };
static int g_force; /* 0 auto, 1 scalar, 2 at most avx2 */

static int cpu_isa(void) {
#ifdef MLXN_X86
    static int cached = -1; /* relaxed atomics: threads may race to fill it, same value */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        __builtin_cpu_init();
        c = ISA_SCALAR;
        if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) c = ISA_AVX2;
        if (c == ISA_AVX2 && __builtin_cpu_supports("avx512f") &&
            __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
            __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512dq"))
            c = ISA_512;
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
#else
    return ISA_SCALAR;
#endif
}
static int isa_now(void) {
    int c = cpu_isa(), f = __atomic_load_n(&g_force, __ATOMIC_RELAXED);
    if (f == 1) return ISA_SCALAR;
    if (f == 2 && c > ISA_AVX2) return ISA_AVX2;
    return c;
}
const char *mlxn_mm_isa(void) {
    static const char *names[] = {"scalar", "avx2", "avx512vnni"};
    return names[isa_now()];
}
void mlxn_mm_force_isa(int force) { __atomic_store_n(&g_force, force, __ATOMIC_RELAXED); }
int mlxn_mm_forced_isa(void) { return __atomic_load_n(&g_force, __ATOMIC_RELAXED); }

/* ------------------------------------------------------------------------ */
/* Row dequantization, AVX-512 (bit-exact with the scalar one)                */
/* ------------------------------------------------------------------------ */

#ifdef MLXN_X86
/* Round each lane to the scale dtype, as MLX's f16/bf16 arithmetic does. */
TARGET_512 static inline __m512 round_sb(__m512 v, mlxn_dtype t) {
    if (t == MLXN_BF16) {
        __m512i u = _mm512_castps_si512(v);
        __m512i odd = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
        u = _mm512_add_epi32(u, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7FFF)));
        return _mm512_castsi512_ps(_mm512_and_si512(u, _mm512_set1_epi32((int)0xFFFF0000u)));
    }
    if (t == MLXN_F16)
        return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    return v;
}

/* MLX row n, [k0,k1) → f32: 16 codes at a time (2·bits bytes, masked load,
 * byte shuffle into dwords, per-lane shift), then round(round(s·q) + b). */
/* For 16 codes of `bits` bits packed little-endian: per 32-bit lane, the
 * byte shuffle that brings its (up to two) source bytes down (0x80 = zero)
 * and the right shift that then aligns the code. */
TARGET_512 static inline void mlx_unpack_tables(int bits, __m512i *vidx, __m512i *vsh) {
    uint8_t idx[64];
    uint32_t sh[16];
    for (int i = 0; i < 16; i++) {
        int b0 = i * bits / 8;
        idx[4 * i] = (uint8_t)b0;
        idx[4 * i + 1] = (uint8_t)(b0 + 1 < 16 ? b0 + 1 : 0x80);
        idx[4 * i + 2] = idx[4 * i + 3] = 0x80;
        sh[i] = (uint32_t)(i * bits % 8);
    }
    *vidx = _mm512_loadu_si512(idx);
    *vsh = _mm512_loadu_si512(sh);
}

TARGET_512 static void mlx_dequant_row_512(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1,
                                           float *out) {
    const int bits = w->bits, group = w->group;
    const int64_t K = w->K, G = K / group;
    const size_t rowb = (size_t)(K / 8 * bits);
    const uint8_t *row = (const uint8_t *)w->w + (size_t)n * rowb;
    __m512i vidx, vsh;
    mlx_unpack_tables(bits, &vidx, &vsh);
    const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
    const __mmask16 lm = (__mmask16)((1u << (2 * bits)) - 1);
    const mlxn_dtype t = w->sb_type;
    for (int64_t g0 = k0; g0 < k1; g0 += group) {
        size_t gi = (size_t)(n * G + g0 / group);
        float sc, bi;
        if (t == MLXN_F32) {
            sc = ((const float *)w->scales)[gi];
            bi = ((const float *)w->biases)[gi];
        } else if (t == MLXN_F16) {
            sc = mlxn_f16_to_f32(((const uint16_t *)w->scales)[gi]);
            bi = mlxn_f16_to_f32(((const uint16_t *)w->biases)[gi]);
        } else {
            sc = mlxn_bf16_to_f32(((const uint16_t *)w->scales)[gi]);
            bi = mlxn_bf16_to_f32(((const uint16_t *)w->biases)[gi]);
        }
        const __m512 vs = _mm512_set1_ps(sc), vb = _mm512_set1_ps(bi);
        for (int64_t k = g0; k < g0 + group; k += 16) {
            size_t off = (size_t)(k / 8 * bits);
            __m128i raw = off + 16 <= rowb ? _mm_loadu_si128((const __m128i *)(row + off))
                                           : _mm_maskz_loadu_epi8(lm, row + off);
            __m512i v = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(raw), vidx);
            v = _mm512_and_si512(_mm512_srlv_epi32(v, vsh), mask);
            __m512 q = _mm512_cvtepi32_ps(v);
            __m512 r = _mm512_add_ps(round_sb(_mm512_mul_ps(vs, q), t), vb);
            _mm512_storeu_ps(out + (k - k0), round_sb(r, t));
        }
    }
}
#endif

#ifdef MLXN_X86
/* GGML blocks → f32, the same f32 operations in the same order as the
 * scalar dequantizer (so bit-exact), 16 lanes at a time. */
TARGET_512 static inline float h2f_s(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
TARGET_512 static inline __m512 u8x16_f(__m128i v) {
    return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(v));
}
TARGET_512 static void ggml_dequant_512(mlxn_dtype t, const void *src, float *y, int64_t nb) {
    const __m128i m4 = _mm_set1_epi8(0x0F);
    switch (t) {
    case MLXN_F16: {
        const uint16_t *h = src;
        int64_t i = 0;
        for (; i + 16 <= nb; i += 16)
            _mm512_storeu_ps(y + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + i))));
        for (; i < nb; i++) y[i] = h2f_s(h[i]);
    } break;
    case MLXN_BF16: {
        const uint16_t *h = src;
        int64_t i = 0;
        for (; i + 16 <= nb; i += 16)
            _mm512_storeu_ps(y + i, _mm512_castsi512_ps(_mm512_slli_epi32(
                                        _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + i))), 16)));
        for (; i < nb; i++) y[i] = mlxn_bf16_to_f32(h[i]);
    } break;
    case MLXN_Q4_0: {
        const mlxn_block_q4_0 *b = src;
        const __m512 c8 = _mm512_set1_ps(8.0f);
        for (int64_t i = 0; i < nb; i++, y += 32) {
            __m512 d = _mm512_set1_ps(h2f_s(b[i].d));
            __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
            /* (q - 8) is exact in f32, so converting q then subtracting 8 is the same value */
            _mm512_storeu_ps(y, _mm512_mul_ps(d, _mm512_sub_ps(u8x16_f(_mm_and_si128(v, m4)), c8)));
            _mm512_storeu_ps(y + 16, _mm512_mul_ps(d, _mm512_sub_ps(u8x16_f(_mm_and_si128(_mm_srli_epi16(v, 4), m4)), c8)));
        }
    } break;
    case MLXN_Q4_1: {
        const mlxn_block_q4_1 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            __m512 d = _mm512_set1_ps(h2f_s(b[i].d)), m = _mm512_set1_ps(h2f_s(b[i].m));
            __m128i v = _mm_loadu_si128((const __m128i *)b[i].qs);
            _mm512_storeu_ps(y, _mm512_add_ps(_mm512_mul_ps(d, u8x16_f(_mm_and_si128(v, m4))), m));
            _mm512_storeu_ps(y + 16, _mm512_add_ps(_mm512_mul_ps(d, u8x16_f(_mm_and_si128(_mm_srli_epi16(v, 4), m4))), m));
        }
    } break;
    case MLXN_Q8_0: {
        const mlxn_block_q8_0 *b = src;
        for (int64_t i = 0; i < nb; i++, y += 32) {
            __m512 d = _mm512_set1_ps(h2f_s(b[i].d));
            for (int h = 0; h < 2; h++)
                _mm512_storeu_ps(y + 16 * h, _mm512_mul_ps(d, _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(
                                                                 _mm_loadu_si128((const __m128i *)(b[i].qs + 16 * h))))));
        }
    } break;
    case MLXN_Q4_K:
    case MLXN_Q5_K: {
        const bool five = t == MLXN_Q5_K;
        const uint8_t *p = src;
        const size_t bs = five ? sizeof(mlxn_block_q5_k) : sizeof(mlxn_block_q4_k);
        for (int64_t i = 0; i < nb; i++, p += bs) {
            const uint8_t *scales = p + 4, *qh = five ? p + 16 : NULL, *qs = five ? p + 48 : p + 16;
            uint16_t hd, hm;
            memcpy(&hd, p, 2);
            memcpy(&hm, p + 2, 2);
            float d = h2f_s(hd), dmin = h2f_s(hm);
            uint32_t u[4];
            mlxn_k4_unpack(scales, u);
            const uint8_t *sc = (const uint8_t *)u, *mn = sc + 8;
            for (int j = 0; j < 8; j++) {
                __m512 dj = _mm512_set1_ps(d * (float)sc[j]), mj = _mm512_set1_ps(dmin * (float)mn[j]);
                for (int h = 0; h < 2; h++) {
                    __m128i v = _mm_loadu_si128((const __m128i *)(qs + 32 * (j / 2) + 16 * h));
                    __m128i q = (j & 1) ? _mm_and_si128(_mm_srli_epi16(v, 4), m4) : _mm_and_si128(v, m4);
                    if (five) {
                        __m128i hv = _mm_loadu_si128((const __m128i *)(qh + 16 * h));
                        __m128i hb = _mm_and_si128(_mm_srl_epi16(hv, _mm_cvtsi32_si128(j)), _mm_set1_epi8(1));
                        q = _mm_or_si128(q, _mm_slli_epi16(hb, 4));
                    }
                    _mm512_storeu_ps(y + 32 * j + 16 * h, _mm512_sub_ps(_mm512_mul_ps(dj, u8x16_f(q)), mj));
                }
            }
            y += 256;
        }
    } break;
    case MLXN_Q6_K: {
        const mlxn_block_q6_k *b = src;
        const __m512i c32 = _mm512_set1_epi32(32);
        for (int64_t i = 0; i < nb; i++) {
            float d = h2f_s(b[i].d);
            for (int hf = 0; hf < 2; hf++, y += 128) {
                const uint8_t *ql = b[i].ql + 64 * hf, *qh = b[i].qh + 32 * hf;
                const int8_t *sc = b[i].scales + 8 * hf;
                for (int l0 = 0; l0 < 32; l0 += 16) {
                    __m128i q[4];
                    mlxn_q6k_codes16(ql, qh, l0, q);
                    int is = l0 / 16;
                    for (int g = 0; g < 4; g++) {
                        __m512 qf = _mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q[g]), c32));
                        _mm512_storeu_ps(y + 32 * g + l0, _mm512_mul_ps(_mm512_set1_ps(d * (float)sc[is + 2 * g]), qf));
                    }
                }
            }
        }
    } break;
    default: break;
    }
}
#endif

void mlxn_qmat_dequant_row(const mlxn_qmat *w, int64_t n, int64_t k0, int64_t k1, float *out) {
#ifdef MLXN_X86
    if (isa_now() == ISA_512) {
        if (w->kind == MLXN_QKIND_MLX) {
            mlx_dequant_row_512(w, n, k0, k1, out);
            return;
        }
        if (w->wtype != MLXN_F32) {
            size_t be = mlxn_dtype_block_elems(w->wtype), bb = mlxn_dtype_block_bytes(w->wtype);
            ggml_dequant_512(w->wtype, ggml_row(w, n) + (size_t)k0 / be * bb, out,
                             (k1 - k0) / (int64_t)be);
            return;
        }
    } else if (isa_now() == ISA_AVX2) {
        if (w->kind == MLXN_QKIND_MLX) {
            mlxn_mlx_dequant_row_avx2(w, n, k0, k1, out);
            return;
        }
        if (w->wtype != MLXN_F32) {
            size_t be = mlxn_dtype_block_elems(w->wtype), bb = mlxn_dtype_block_bytes(w->wtype);
            mlxn_ggml_dequant_avx2(w->wtype, ggml_row(w, n) + (size_t)k0 / be * bb, out,
                                   (k1 - k0) / (int64_t)be);
            return;
        }
    }
#endif
    dequant_row_scalar(w, n, k0, k1, out);
}

/* ------------------------------------------------------------------------ */
/* Scratch layout                                                             */
/* ------------------------------------------------------------------------ */

#define KC 256 /* K chunk of the packed panel (AVX2 too: 128 / 64 measured slower there) */
#define NR 32  /* columns per panel */
#define MR 6   /* rows per micro-kernel call */
/* Blocked GEMM (gemm_blocked): the W panel is KC steps × NR columns, a
 * step being one k (f32) or a pair of k (bf16, so KCB = 2·KC k per chunk):
 * 32 KB, stays in L1 while every x row passes over it. x is packed per MCB
 * rows × one chunk (512 KB, L2) in MRB-row micro-panels. KCB 512 ran ~10%
 * faster than 256 for MLX weights on the dev EPYC (fewer passes over y,
 * longer pieces of each W row). */
#define KCB 512
/* A k chunk of the blocked GEMM may run to KCX steps (KC + KC/4): a last
 * piece of K under a quarter chunk joins the chunk before (gemm_kc), so
 * K = 576 is one chunk, not 512 + 64 (which packed x again and passed over
 * every y block twice). */
#define KCX (KC + KC / 4)
#define MRB 12  /* rows per micro-kernel call: 12×32 accumulators = 24 zmm */
#define MCB 512 /* x rows packed at a time */
#define NCB 1024 /* columns whose y block (2 MB at MCB rows) is revisited per k chunk */
/* Below MDEC rows the VNNI decode kernels (weights read once, dotted with
 * every int8 x row) beat the f32 GEMM, whose fixed cost is dequantizing and
 * packing W. Measured on the dev EPYC, 1 thread, N=256, K=4096, ms:
 *   M:            8     16    24    32
 *   q4_0 GEMM   0.295 0.346 0.395 0.491   decode 0.120 0.240 0.363 0.475
 *   mlx-q4 GEMM 0.466 0.514 0.574 0.667   decode 0.136 0.292 0.444 0.583
 * so they cross near M = 32. */
#define MDEC MLXN_MM_DECODE_ROWS

static inline size_t al64(size_t n) { return (n + 63) & ~(size_t)63; }

/* decode scratch: shared row f32[K] and sbuf f32[K/32+16], then one slice
 * per x row: xq int8[K rounded up to 128] | xq2 (the same) | dx, xg, xgg,
 * xs32 f32[K/32+16] | xs16 f32[K/16+16]. The pads let 64-byte / 16-wide loads run past the last
 * block: quantize_x_512 zeroes them (xq to the 128 boundary, dx, xg, xs32,
 * xs16 16 entries; xgg in decode_vnni), so a tail step multiplies zero
 * weights or factors by zeros, never by stale scratch (NaN·0 = NaN). */
typedef struct dec_scratch {
    int8_t *xq;  /* x quantized, in the layout the weight format wants */
    int8_t *xq2; /* MLX weights: the rounding residual's codes (X2_SCALE), same layout */
    float *dx;   /* per 32-block step of xq */
    float *xg;   /* Σx per 32-block of the rounded x: dx·Σ codes */
    float *xgg;  /* the same per MLX group (f32 x: the exact Σx) */
    float *xs32; /* Σ of xq codes per 32-block (natural order), as f32 */
    float *xs16; /* Σ of xq codes per 16 elements (natural order), as f32 */
    float *sbuf; /* one row's MLX scales, widened (shared) */
    float *row;  /* one dequantized row, generic path (shared) */
} dec_scratch;

static size_t dec_v(size_t k) { return al64((k / 32 + 16) * 4); }
static size_t dec_xq(size_t k) { return (k + 127) & ~(size_t)127; }
static size_t dec_slice(size_t k) { return 2 * dec_xq(k) + 4 * dec_v(k) + al64((k / 16 + 16) * 4); }
static size_t dec_bytes(int64_t K, int64_t M) {
    size_t k = (size_t)K;
    return 64 + al64(k * 4) + dec_v(k) + (size_t)M * dec_slice(k);
}
static dec_scratch dec_layout(void *scratch, int64_t K, int64_t m) {
    size_t k = (size_t)K, v = dec_v(k);
    uint8_t *base = (uint8_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    dec_scratch s;
    s.row = (float *)base;
    s.sbuf = (float *)(base + al64(k * 4));
    uint8_t *p = base + al64(k * 4) + v + (size_t)m * dec_slice(k);
    s.xq = (int8_t *)p;
    p += dec_xq(k);
    s.xq2 = (int8_t *)p;
    p += dec_xq(k);
    s.dx = (float *)p;
    s.xg = (float *)(p + v);
    s.xgg = (float *)(p + 2 * v);
    s.xs32 = (float *)(p + 3 * v);
    s.xs16 = (float *)(p + 4 * v);
    return s;
}
/* gemm: panel f32[KC*NR] | tmp f32[NR*KCX] | zero f32[KC] */
/* gemm_blocked: x steps u32[ceil(min(M,MCB)/MRB)·MRB][KCX] | panel
 * u32[KCX·NR] | rows f32[NR·2·KCX]; gemm_avx2 fits in it (fewer x rows, a
 * multiple of MR ≤ MRB, chunks of KC, and rows f32[NR·KC]) */
_Static_assert(KCB / 2 == KC, "a bf16 chunk has as many steps (pairs) as an f32 one");
static size_t gemm_bytes(const mlxn_qmat *w, int64_t M) {
    (void)w;
    size_t f32 = (KC * NR + KCX * NR + KC) * 4 + 64;
    int64_t mc = M < MCB ? M : MCB;
    size_t xp = (size_t)((mc + MRB - 1) / MRB * MRB) * KCX * 4;
    size_t bf = al64(xp) + (KCX * NR + NR * 2 * KCX) * 4 + 64;
    return f32 > bf ? f32 : bf;
}


/* ------------------------------------------------------------------------ */
/* Scalar / generic decode: dequantize a row, f32 dot                         */
/* ------------------------------------------------------------------------ */

static float dot_f32_scalar(const float *a, const float *b, int64_t K) {
    float s[8] = {0};
    int64_t k = 0;
    for (; k + 8 <= K; k += 8)
        for (int j = 0; j < 8; j++) s[j] += a[k + j] * b[k + j];
    float t = ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

#ifdef MLXN_X86
TARGET_AVX2 static float dot_f32_avx2(const float *a, const float *b, int64_t K) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int64_t k = 0;
    for (; k + 16 <= K; k += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k), _mm256_loadu_ps(b + k), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + k + 8), _mm256_loadu_ps(b + k + 8), s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    float t = _mm_cvtss_f32(h);
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

TARGET_512 static float dot_f32_512(const float *a, const float *b, int64_t K) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t k = 0;
    for (; k + 32 <= K; k += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k), _mm512_loadu_ps(b + k), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + k + 16), _mm512_loadu_ps(b + k + 16), s1);
    }
    float t = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; k < K; k++) t += a[k] * b[k];
    return t;
}

/* Rows longer than PF_LONG_ROW bytes (all streams) are not prefetched a
 * whole row at a time: that burst at the row's start holds the line-fill
 * buffers the row's own loads need (dev EPYC, 1 thread, q4_0 4096 x 14336:
 * 22.1 GB/s with it, 31.5 without). Their kernels instead prefetch in the
 * inner loop, PF_STREAM bytes ahead of each stream, one prefetch per 64
 * bytes consumed (PF_AHEAD). The distance matters: 2-4 KB ahead was slower
 * than no prefetch (the hardware prefetcher already runs that far), 16-32
 * KB fastest, 48 KB and more slower again (dev EPYC, 2 threads, 4096 x
 * 14336, % of the read bandwidth at ~78 GB/s: q8_0 55 % row burst, 65 %
 * none, 90 % at 16-32 KB; q4_k 53 / 58 / 78-85 %). Rows up to 2 KB keep the
 * row-ahead prefetch, which small K needs. The limit was 4 KB; at 2 KB the
 * K = 4096 rows of the 4- and 6-bit formats stream too (dev EPYC, 1 thread,
 * 4096 x 4096 and 14336 x 4096, two alternated runs: MLX 4-bit 4-21 %,
 * q4_0 6-19 %, q4_1 12-26 %, q6_k 4-18 % less time; q4_k, q5_k and 8-bit
 * within the run-to-run spread). */
#ifndef PF_LONG_ROW
#define PF_LONG_ROW 2048
#endif
/* PF_STREAM was 24 KB (the fastest at ~78 GB/s, above); with the VM in its
 * ~33 GB/s regime 12 KB read more in 81 of 84 paired rounds (dev EPYC,
 * bench ops --bw-each, 4096 x 14336 and 14336 x 4096, 7 formats, 1 and 2
 * threads, three alternated rounds, bench/RESULTS.md): 2 threads 4096 x
 * 14336 14-24 -> 24-28 GB/s, 14336 x 4096 16-32 -> 32-34 GB/s; 8 KB about
 * as fast but noisier. Not yet measured in the ~78 GB/s regime. */
#ifndef PF_STREAM
#define PF_STREAM 12288
#endif
/* In-loop software prefetch `pf` bytes ahead of a weight stream (0: none),
 * one per 64 bytes the loop consumes; see PF_STREAM. Rows are contiguous,
 * so near a row's end it runs on into the next rows; x86 prefetches never
 * fault, also past the matrix. The lines go to L2 (prefetcht1), not L1:
 * asked into L1 from 12 KB ahead, 4096 x 14336 ran at 40-76 % of the read
 * bandwidth against 64-96 % for 14336 x 4096 (the same bytes); into L2,
 * the 4- and 8-bit formats' medians are 82-95 % at every shape (dev EPYC, 2
 * threads, ~33 GB/s regime, bench/RESULTS.md, session of 23:30). q8_0's
 * dot, which consumes bytes fastest, fell to 43-64 % at every shape that
 * way. Its rows over PF_Q8_L2_ROW bytes take a second
 * prefetch into L1 PF_NEAR_Q8 bytes ahead (PF_AHEAD_Q8): 4096 x 14336, 2
 * threads 20-22 -> 27-28 GB/s, 1 thread 16.0 -> 18.6-19.8; shorter rows keep
 * the one prefetch into L1 (PF_AHEAD_L1): with PF_AHEAD_Q8 K = 4096 rows ran
 * as fast on 2 threads but 16-19 GB/s against 17-23 on 1. (1 KB ahead was
 * no faster than L1 only.) */
#ifndef PF_HINT
#define PF_HINT _MM_HINT_T1
#endif
#ifndef PF_NEAR_Q8
#define PF_NEAR_Q8 2048
#endif
#ifndef PF_Q8_L2_ROW
#define PF_Q8_L2_ROW 8192
#endif
#define PF_AHEAD(p, pf)                                                    \
    do {                                                                   \
        if (pf) _mm_prefetch((const char *)(p) + (pf), PF_HINT);           \
    } while (0)
#define PF_AHEAD_Q8(p, pf)                                                 \
    do {                                                                   \
        if (pf) {                                                          \
            _mm_prefetch((const char *)(p) + (pf), PF_HINT);               \
            _mm_prefetch((const char *)(p) + PF_NEAR_Q8, _MM_HINT_T0);     \
        }                                                                  \
    } while (0)
/* into L1: q8_0's shorter rows, and the short rows' block streams
 * (stream_step, PF_BYTES ahead) */
#define PF_AHEAD_L1(p, pf)                                                 \
    do {                                                                   \
        if (pf) _mm_prefetch((const char *)(p) + (pf), _MM_HINT_T0);       \
    } while (0)

/* Dense rows converted on the fly; pf: in-loop prefetch distance (0: none;
 * f16 / bf16 rows over PF_LONG_ROW take PF_STREAM, into L2 as above: dev
 * EPYC, 2 threads, three alternated rounds, GB/s before -> after: bf16
 * 4096 x 4096 22-28 -> 29-32, 32000 x 4096 21-30 -> 30-32, f16 4096 x 14336
 * 19-25 -> 23-24). */
TARGET_512 static float dot_dense_512(mlxn_dtype t, const void *wr, const float *x, int64_t K, size_t pf) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int64_t k = 0;
    if (t == MLXN_F32) return dot_f32_512(wr, x, K);
    const uint16_t *h = wr;
    if (t == MLXN_F16) {
        for (; k + 32 <= K; k += 32) {
            PF_AHEAD(h + k, pf); /* 64 bytes per iteration */
            __m512 w0 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + k)));
            __m512 w1 = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(h + k + 16)));
            s0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), s0);
            s1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), s1);
        }
    } else {
        for (; k + 32 <= K; k += 32) {
            PF_AHEAD(h + k, pf);
            __m512i a = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + k)));
            __m512i b = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)(h + k + 16)));
            __m512 w0 = _mm512_castsi512_ps(_mm512_slli_epi32(a, 16));
            __m512 w1 = _mm512_castsi512_ps(_mm512_slli_epi32(b, 16));
            s0 = _mm512_fmadd_ps(w0, _mm512_loadu_ps(x + k), s0);
            s1 = _mm512_fmadd_ps(w1, _mm512_loadu_ps(x + k + 16), s1);
        }
    }
    float r = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
    for (; k < K; k++)
        r += (t == MLXN_F16 ? mlxn_f16_to_f32(h[k]) : mlxn_bf16_to_f32(h[k])) * x[k];
    return r;
}
#endif

/* Decode M (< MDEC) x rows over [n0,n1) through f32 (exact dequantized
 * weights): each weight row is dequantized once and dotted with every x row. */
static void decode_generic(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0,
                           int64_t n1, float *row, int isa) {
    const int64_t K = w->K, N = w->N;
    for (int64_t n = n0; n < n1; n++) {
#ifdef MLXN_X86
        if (isa == ISA_512 && w->kind == MLXN_QKIND_GGML &&
            (w->wtype == MLXN_F32 || w->wtype == MLXN_F16 || w->wtype == MLXN_BF16)) {
            const size_t pf = w->wtype != MLXN_F32 && (size_t)K * 2 > PF_LONG_ROW ? PF_STREAM : 0;
            for (int64_t m = 0; m < M; m++)
                y[m * N + n] = dot_dense_512(w->wtype, ggml_row(w, n), x + m * K, K, pf);
            continue;
        }
        if (isa == ISA_AVX2 && w->kind == MLXN_QKIND_GGML &&
            (w->wtype == MLXN_F16 || w->wtype == MLXN_BF16)) {
            for (int64_t m = 0; m < M; m++)
                y[m * N + n] = mlxn_dot_dense_avx2(w->wtype, ggml_row(w, n), x + m * K, K);
            continue;
        }
#endif
        const float *r = row;
        if (w->kind == MLXN_QKIND_GGML && w->wtype == MLXN_F32)
            r = (const float *)(const void *)ggml_row(w, n);
        else
            mlxn_qmat_dequant_row(w, n, 0, K, row);
        for (int64_t m = 0; m < M; m++) {
#ifdef MLXN_X86
            if (isa == ISA_512)
                y[m * N + n] = dot_f32_512(r, x + m * K, K);
            else if (isa == ISA_AVX2)
                y[m * N + n] = dot_f32_avx2(r, x + m * K, K);
            else
#endif
                y[m * N + n] = dot_f32_scalar(r, x + m * K, K);
        }
    }
}

/* ------------------------------------------------------------------------ */
/* AVX-512 VNNI decode                                                        */
/* ------------------------------------------------------------------------ */

#ifdef MLXN_X86
/* Order of x's int8 codes, matched to how each format stores its codes:
 *  XL_NATURAL: element order.
 *  XL_MLX4:    per 128 elements, [evens of blocks 0-3 | odds of blocks 0-3]
 *              (16 each): MLX packs elements 2i, 2i+1 in one byte's low and
 *              high nibble, so a 64-byte load's low nibbles are the evens.
 *  XL_Q4K:     per 256, 32-blocks in order 0,2,1,3,4,6,5,7: a 64-byte load of
 *              q4_k codes holds sub-blocks (0,2) in low and (1,3) in high
 *              nibbles.
 *  XL_Q40:     per 128, [elements 0-15 of blocks 0-3 | elements 16-31 of
 *              blocks 0-3]: q4_0/q4_1 keep 0-15 in low, 16-31 in high
 *              nibbles, and four blocks' 16 code bytes fill one zmm.
 * When K % 128 != 0 the last 128-chunk of XL_MLX4 / XL_Q40 holds only
 * blocks 0..K%128/32-1, at the same places; the other bytes are zero. */
enum { XL_NATURAL, XL_MLX4, XL_Q4K, XL_Q40 };

/* MLX weights take x in two int8 parts: x ≈ dx·(c + c2/X2_SCALE), c the
 * int8 codes (as below) and c2 = round((x/dx - c)·X2_SCALE) in [-64, 64]
 * the rounding residual's; a step's integer products combine as
 * (Σ q·c)·X2_SCALE + Σ q·c2 (int32: at most 8·255·127·128 + 8·255·64), so
 * x's error drops from dx/2 to dx/256 for two VPDPBUSDs (one more than
 * int8) a weight vector. Why: with int8 x alone greedy decoding of the
 * default model (SmolLM2 MLX 4-bit) left mlx-lm's tokens at 12 and 25 of
 * 64 for two of the three e2e prompts, where mlx-lm's top-2 margins were
 * 0.13 and 0.23; with the residual (emulated in f32, then these kernels)
 * all 64 agree. GGML formats keep int8 x alone, as llama.cpp's q8 does;
 * so do MLX weights with w->int8_act (MLXN_SESSION_INT8_ACTIVATIONS). */
#define X2_SCALE 128

/* Codes of block j (two zmm of 16 int32 lanes: elements 0-15, 16-31) into
 * xq in `layout`. */
TARGET_512 static inline void store_x_codes(int8_t *xq, int64_t j, __m512i qa, __m512i qb, int layout) {
    const __m512i ev = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    if (layout == XL_Q40) {
        int8_t *o = xq + 128 * (j / 4) + 16 * (j % 4);
        _mm_storeu_si128((__m128i *)o, _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(o + 64), _mm512_cvtsepi32_epi8(qb));
    } else if (layout == XL_MLX4) {
        int8_t *o = xq + 128 * (j / 4) + 16 * (j % 4);
        _mm_storeu_si128((__m128i *)o, _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(qa, ev, qb)));
        _mm_storeu_si128((__m128i *)(o + 64), _mm512_cvtsepi32_epi8(_mm512_permutex2var_epi32(qa, od, qb)));
    } else {
        int64_t jj = j;
        if (layout == XL_Q4K) {
            static const int pos[8] = {0, 2, 1, 3, 4, 6, 5, 7}; /* slot of block j%8 */
            jj = j / 8 * 8 + pos[j % 8];
        }
        _mm_storeu_si128((__m128i *)(xq + 32 * jj), _mm512_cvtsepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(xq + 32 * jj + 16), _mm512_cvtsepi32_epi8(qb));
    }
}

/* Quantize x[K] to int8 per 32-block (d = max|x|/127, round to nearest even)
 * into xq in `layout`, with dx and xg (Σ of the rounded x) per block in
 * natural order; xs32 / xs16 the sums of the codes c. two: also the
 * residual's codes c2 into xq2 (X2_SCALE above); dx is then d / X2_SCALE,
 * the factor of the combined products, and xg = dx·(X2_SCALE·Σc + Σc2). */
TARGET_512 static void quantize_x_512(const float *x, int64_t K, dec_scratch *s, int layout, bool two) {
    const int64_t kr = K / 128 * 128;
    if (kr < K) memset(s->xq + kr, 0, 128);
    if (two && kr < K) memset(s->xq2 + kr, 0, 128);
    for (int64_t j = 0; j < K / 32; j++) {
        __m512 a = _mm512_loadu_ps(x + 32 * j), b = _mm512_loadu_ps(x + 32 * j + 16);
        __m512 am = _mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b));
        float amax = _mm512_reduce_max_ps(am);
        float id = amax > 0 ? 127.0f / amax : 0.0f;
        const __m512 ta = _mm512_mul_ps(a, _mm512_set1_ps(id)), tb = _mm512_mul_ps(b, _mm512_set1_ps(id));
        __m512i qa = _mm512_cvtps_epi32(ta), qb = _mm512_cvtps_epi32(tb);
        qa = _mm512_max_epi32(_mm512_min_epi32(qa, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        qb = _mm512_max_epi32(_mm512_min_epi32(qb, _mm512_set1_epi32(127)), _mm512_set1_epi32(-127));
        s->xs16[2 * j] = (float)_mm512_reduce_add_epi32(qa);
        s->xs16[2 * j + 1] = (float)_mm512_reduce_add_epi32(qb);
        s->xs32[j] = s->xs16[2 * j] + s->xs16[2 * j + 1];
        store_x_codes(s->xq, j, qa, qb, layout);
        if (two) {
            const __m512 sc = _mm512_set1_ps((float)X2_SCALE);
            const __m512i ra = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(ta, _mm512_cvtepi32_ps(qa)), sc));
            const __m512i rb = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_sub_ps(tb, _mm512_cvtepi32_ps(qb)), sc));
            store_x_codes(s->xq2, j, ra, rb, layout);
            s->dx[j] = amax / 127.0f / (float)X2_SCALE;
            s->xg[j] = s->dx[j] * ((float)X2_SCALE * s->xs32[j] + (float)_mm512_reduce_add_epi32(_mm512_add_epi32(ra, rb)));
        } else {
            s->dx[j] = amax / 127.0f;
            s->xg[j] = s->dx[j] * s->xs32[j];
        }
    }
    for (int j = 0; j < 16; j++) {
        s->dx[K / 32 + j] = s->xg[K / 32 + j] = s->xs32[K / 32 + j] = 0;
        s->xs16[K / 16 + j] = 0;
    }
}

TARGET_512 static inline float hsum256(__m256 v) {
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_movehdup_ps(h));
    return _mm_cvtss_f32(h);
}
TARGET_512 static inline float h2f_512(uint16_t h) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(h)));
}
#define DPB(acc, a, b) _mm256_dpbusd_epi32(acc, a, b)

/* q4_0 / q4_1, four blocks per step (x in XL_Q40); a last step of 1-3
 * blocks when K % 128 != 0 (absent blocks: zero codes and zero factors).
 * q4_0: Σ d(q-8)·dx·c = Σ d·dx·(Σ q·c) - 8·Σ d·dx·(Σ c), c = x codes.
 * q4_1: Σ (d q + m)·x = Σ d·dx·(Σ q·c) + Σ m·(Σ x). */
TARGET_512 static inline __m512i q4x4_codes(const uint8_t *q0, size_t stride, int nb) {
    __m512i v = _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)q0));
    if (nb > 1) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q0 + stride)), 1);
    if (nb > 2) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q0 + 2 * stride)), 2);
    if (nb > 3) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(q0 + 3 * stride)), 3);
    return v;
}
/* nb (1-4) f16 values `stride` bytes apart → f32 lanes 0..nb-1, zero above. */
TARGET_512 static inline __m128 h4(const uint8_t *p, size_t stride, int nb) {
    uint16_t a = 0, b = 0, c = 0, d = 0; /* scalars: no store-forwarding stall */
    memcpy(&a, p, 2);
    if (nb > 1) memcpy(&b, p + stride, 2);
    if (nb > 2) memcpy(&c, p + 2 * stride, 2);
    if (nb > 3) memcpy(&d, p + 3 * stride, 2);
    return _mm_cvtph_ps(_mm_setr_epi16((short)a, (short)b, (short)c, (short)d, 0, 0, 0, 0));
}
/* A 4-bit step's products: v = 64 code bytes (two codes each) against 128
 * int8 x at xq, low nibbles with xq[0, 64), high ones with xq[64, 128);
 * int32 lanes, 8 codes each. */
TARGET_512 ALWAYS_INLINE static inline __m512i nib_dot(__m512i v, const int8_t *xq) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    return _mm512_dpbusd_epi32(
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512((const void *)xq)), hi,
        _mm512_loadu_si512((const void *)(xq + 64)));
}
/* One step: v = the nb blocks' 16 code bytes each (zmm quarters), dm = their
 * d (lanes 0-3) and, q4_1, m (lanes 4-7), zero for absent blocks. */
TARGET_512 static inline void q4x4_step(__m512i v, __m256 dm, bool q41, const int8_t *xq,
                                        const float *dx, const float *xsum, __m512 *acc,
                                        __m128 *cor) {
    const __m512i il = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i d = nib_dot(v, xq);
    __m128 f4 = _mm_mul_ps(_mm256_castps256_ps128(dm), _mm_loadu_ps(dx));
    __m512 f = _mm512_permutexvar_ps(il, _mm512_castps128_ps512(f4));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, *acc);
    /* q4_1: m·Σx; q4_0: d·dx·Σc (times -8 at the end) */
    *cor = _mm_fmadd_ps(q41 ? _mm256_extractf128_ps(dm, 1) : f4, _mm_loadu_ps(xsum), *cor);
}
/* q4x4_load's word indices: [q4_1][0] the four blocks' codes, [q4_1][1]
 * their d (q4_1: then m). */
static const uint16_t k_q4x4_idx[2][2][32] = {
    {{1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17,
      19, 20, 21, 22, 23, 24, 25, 26, 28, 29, 30, 31, 32, 33, 34, 35},
     {0, 9, 18, 27}},
    {{2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 14, 15, 16, 17, 18, 19,
      22, 23, 24, 25, 26, 27, 28, 29, 32, 33, 34, 35, 36, 37, 38, 39},
     {0, 10, 20, 30, 1, 11, 21, 31}}};
/* Four whole blocks (72 / 80 bytes at b) → codes and d/m by two word
 * permutes of a 64-byte and an 8/16-byte load, instead of 4 code loads +
 * inserts and 8 scalar f16 loads + inserts. Word w of [b..b+64) is index w,
 * of [b+64..) index 32+: q4_0's block i codes are words 9i+1.., d word 9i;
 * q4_1's codes 10i+2.., d 10i, m 10i+1. */
TARGET_512 static inline void q4x4_load(const uint8_t *b, bool q41, __m512i cidx, __m512i sidx,
                                        __m512i *v, __m256 *dm) {
    __m512i lo = _mm512_loadu_si512((const void *)b);
    __m512i hi = q41 ? _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(b + 64)))
                     : _mm512_zextsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 64)));
    *v = _mm512_permutex2var_epi16(lo, cidx, hi);
    *dm = _mm256_cvtph_ps(_mm512_castsi512_si128(_mm512_permutexvar_epi16(sidx, lo)));
}
/* Two steps (8 whole blocks at b) at once: as q4x4_load + q4x4_step for
 * each, but both steps' d (and m) come from one word permute of their first
 * 64 bytes and one conversion, their factors d·dx and offset terms as one
 * ymm (added into *cor8: lanes 0-3 step a, 4-7 step b). x in XL_Q40 (256
 * codes at xq, 8 dx and Σ at dx / xsum). */
TARGET_512 ALWAYS_INLINE static inline void q4x4_pair(const uint8_t *b, bool q41, const int8_t *xq, const float *dx,
                                                      const float *xsum, __m512 *acca, __m512 *accb, __m256 *cor8) {
    /* words w of steps a and b are index w and 32 + w of [la | lb] */
    static const uint16_t ts[2][32] = {{0, 9, 18, 27, 32, 41, 50, 59},
                                       {0, 10, 20, 30, 32, 42, 52, 62, 1, 11, 21, 31, 33, 43, 53, 63}};
    const size_t bs = q41 ? sizeof(mlxn_block_q4_1) : sizeof(mlxn_block_q4_0);
    const __m512i cidx = _mm512_loadu_si512(k_q4x4_idx[q41][0]);
    const __m512i il0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    const __m512i il1 = _mm512_add_epi32(il0, _mm512_set1_epi32(4));
    const __m512i la = _mm512_loadu_si512((const void *)b);
    const __m512i lb = _mm512_loadu_si512((const void *)(b + 4 * bs));
    const __m512i ha = q41 ? _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(b + 64)))
                           : _mm512_zextsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 64)));
    const __m512i hb = q41 ? _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)(b + 4 * bs + 64)))
                           : _mm512_zextsi128_si512(_mm_loadl_epi64((const __m128i *)(b + 4 * bs + 64)));
    const __m512i va = _mm512_permutex2var_epi16(la, cidx, ha), vb = _mm512_permutex2var_epi16(lb, cidx, hb);
    const __m512i sw = _mm512_permutex2var_epi16(la, _mm512_loadu_si512(ts[q41]), lb); /* d a, d b (m a, m b) */
    __m256 d8;
    if (q41) {
        const __m512 dm16 = _mm512_cvtph_ps(_mm512_castsi512_si256(sw));
        d8 = _mm512_castps512_ps256(dm16);
        *cor8 = _mm256_fmadd_ps(_mm512_extractf32x8_ps(dm16, 1), _mm256_loadu_ps(xsum), *cor8);
    } else {
        d8 = _mm256_cvtph_ps(_mm512_castsi512_si128(sw));
    }
    const __m256 f8 = _mm256_mul_ps(d8, _mm256_loadu_ps(dx));
    if (!q41) *cor8 = _mm256_fmadd_ps(f8, _mm256_loadu_ps(xsum), *cor8);
    const __m512 fz = _mm512_castps256_ps512(f8);
    *acca = _mm512_fmadd_ps(_mm512_cvtepi32_ps(nib_dot(va, xq)), _mm512_permutexvar_ps(il0, fz), *acca);
    *accb = _mm512_fmadd_ps(_mm512_cvtepi32_ps(nib_dot(vb, xq + 128)), _mm512_permutexvar_ps(il1, fz), *accb);
}
TARGET_512 ALWAYS_INLINE static inline __m512 acc_q4x4_512(const uint8_t *b, bool q41,
                                                     const dec_scratch *s, int64_t K,
                                                     size_t pf) {
    const size_t bs = q41 ? sizeof(mlxn_block_q4_1) : sizeof(mlxn_block_q4_0), qo = q41 ? 4 : 2;
    const __m512i cidx = _mm512_loadu_si512(k_q4x4_idx[q41][0]), sidx = _mm512_loadu_si512(k_q4x4_idx[q41][1]);
    const float *xsum = q41 ? s->xg : s->xs32;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m128 cor = _mm_setzero_ps();
    __m512i v;
    __m256 dm;
    int64_t p = 0;
#ifndef Q4X4_SCALES_PER_STEP
    __m256 cor8 = _mm256_setzero_ps();
    for (; p + 2 <= K / 128; p += 2, b += 8 * bs) {
        PF_AHEAD(b, pf); /* 144 / 160 bytes per iteration */
        PF_AHEAD(b + 64, pf);
        PF_AHEAD(b + 128, pf);
        q4x4_pair(b, q41, s->xq + 128 * p, s->dx + 4 * p, xsum + 4 * p, &acc0, &acc1, &cor8);
    }
    cor = _mm_add_ps(_mm256_castps256_ps128(cor8), _mm256_extractf128_ps(cor8, 1));
#endif
    for (; p + 2 <= K / 128; p += 2, b += 8 * bs) {
        PF_AHEAD(b, pf); /* 144 / 160 bytes per iteration */
        PF_AHEAD(b + 64, pf);
        PF_AHEAD(b + 128, pf);
        q4x4_load(b, q41, cidx, sidx, &v, &dm);
        q4x4_step(v, dm, q41, s->xq + 128 * p, s->dx + 4 * p, xsum + 4 * p, &acc0, &cor);
        q4x4_load(b + 4 * bs, q41, cidx, sidx, &v, &dm);
        q4x4_step(v, dm, q41, s->xq + 128 * p + 128, s->dx + 4 * p + 4, xsum + 4 * p + 4, &acc1,
                  &cor);
    }
    if (p < K / 128) {
        q4x4_load(b, q41, cidx, sidx, &v, &dm);
        q4x4_step(v, dm, q41, s->xq + 128 * p, s->dx + 4 * p, xsum + 4 * p, &acc0, &cor);
        p++, b += 4 * bs;
    }
    if (K % 128) { /* 1-3 blocks: loads that stay inside them */
        int nb = (int)(K % 128 / 32);
        dm = _mm256_insertf128_ps(_mm256_castps128_ps256(h4(b, bs, nb)),
                                  q41 ? h4(b + 2, bs, nb) : _mm_setzero_ps(), 1);
        q4x4_step(q4x4_codes(b + qo, bs, nb), dm, q41, s->xq + 128 * p, s->dx + 4 * p,
                  xsum + 4 * p, &acc1, &cor);
    }
    __m512 c = _mm512_zextps128_ps512(_mm_mul_ps(cor, _mm_set1_ps(q41 ? 1.0f : -8.0f)));
    return _mm512_add_ps(_mm512_add_ps(acc0, acc1), c); /* lanes sum to the dot */
}

/* Lane L of a step's products belongs to block il[L]: 4-bit formats' dpbusd
 * lanes 4j..4j+3 cover block j; MLX 8-bit's two loads (blocks 0-1, 2-3, 8
 * lanes each; q8_0 likewise) are folded pairwise in 128-bit lanes (stream_step,
 * dot_q8_0_512). */
static const int32_t k_stream_il[2][16] = {{0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3},
                                           {0, 0, 2, 2, 0, 0, 2, 2, 1, 1, 3, 3, 1, 1, 3, 3}};
/* Four q8_0 blocks' d: words 17i of their 136 bytes */
static const uint16_t k_q8x4_d[32] = {0, 17, 34, 51};
/* Four q8_0 blocks (136 bytes at q) against their 128 x codes at xq: the
 * codes go in as u8 w ^ 0x80 (= w + 128) onto the int32 lanes c01 (blocks
 * 0-1, 8 lanes each) and c23 (blocks 2-3), whose two products are folded
 * pairwise into lanes as k_stream_il[1]; *d4 = the four d (f32). */
TARGET_512 ALWAYS_INLINE static inline __m512i q8x4_dot(const uint8_t *q, const int8_t *xq, __m512i c01,
                                                        __m512i c23, __m128 *d4) {
    const __m512i s80 = _mm512_set1_epi8((char)0x80);
    const __m512i lo = _mm512_loadu_si512((const void *)q), mid = _mm512_loadu_si512((const void *)(q + 64));
    *d4 = _mm_cvtph_ps(_mm512_castsi512_si128(_mm512_permutex2var_epi16(lo, _mm512_loadu_si512(k_q8x4_d), mid)));
    const __m512i w01 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(q + 2))),
                                           _mm256_loadu_si256((const __m256i *)(q + 36)), 1);
    const __m512i w23 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(q + 70))),
                                           _mm256_loadu_si256((const __m256i *)(q + 104)), 1);
    const __m512i d0 = _mm512_dpbusd_epi32(c01, _mm512_xor_si512(w01, s80), _mm512_loadu_si512((const void *)xq));
    const __m512i d1 = _mm512_dpbusd_epi32(c23, _mm512_xor_si512(w23, s80),
                                           _mm512_loadu_si512((const void *)(xq + 64)));
    const __m512 a0 = _mm512_castsi512_ps(d0), a1 = _mm512_castsi512_ps(d1);
    return _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0x88)),
                            _mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0xDD)));
}
/* q8_0: four blocks a step (below), then the rest two per zmm: Σ w·x =
 * Σ |w|·(x signed by w) (VPDPBUSD takes u8 × s8; |−128| is 128 as u8, and
 * x is within ±127), so no offset term; lanes 0-7 belong to block j, 8-15
 * to block j+1. */
TARGET_512 static float dot_q8_0_512(const void *wr, const dec_scratch *s, int64_t K, size_t pf) {
    const mlxn_block_q8_0 *b = wr;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    int64_t nb = K / 32, j = 0;
    const bool l2 = (size_t)nb * sizeof *b > PF_Q8_L2_ROW; /* see PF_AHEAD_Q8 */
#ifndef Q8_DOT_PAIRS
    /* Four blocks (136 bytes) a step, as stream_step: codes as u8 w ^ 0x80
     * (= w + 128), so Σ (w + 128)·c overshoots by 128·Σc per block, taken
     * off at the end through cor = Σ d·dx·Σc; the four d by one word
     * permute. */
    {
        const __m512i il = _mm512_loadu_si512(k_stream_il[1]);
        __m128 cor = _mm_setzero_ps();
        for (; j + 4 <= nb; j += 4) {
            const uint8_t *q = (const uint8_t *)(b + j);
            if (l2) {
                PF_AHEAD_Q8(q, pf);
                PF_AHEAD_Q8(q + 68, pf);
            } else {
                PF_AHEAD_L1(q, pf);
                PF_AHEAD_L1(q + 68, pf);
            }
            __m128 d4;
            const __m512i d = q8x4_dot(q, s->xq + 32 * j, _mm512_setzero_si512(), _mm512_setzero_si512(), &d4);
            const __m128 f4 = _mm_mul_ps(d4, _mm_loadu_ps(s->dx + j));
            const __m512 f = _mm512_permutexvar_ps(il, _mm512_castps128_ps512(f4));
            if (j & 4)
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc1);
            else
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc0);
            cor = _mm_fmadd_ps(f4, _mm_loadu_ps(s->xs32 + j), cor);
        }
        acc0 = _mm512_sub_ps(acc0, _mm512_zextps128_ps512(_mm_mul_ps(cor, _mm_set1_ps(128.0f))));
    }
#endif
    for (; j + 2 <= nb; j += 2) { /* the rest in pairs */
        if (l2)
            PF_AHEAD_Q8(b + j, pf); /* 68 bytes per step */
        else
            PF_AHEAD_L1(b + j, pf);
        __m512i wv = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)b[j].qs)),
                                        _mm256_loadu_si256((const __m256i *)b[j + 1].qs), 1);
        __m512i xv = _mm512_loadu_si512((const void *)(s->xq + 32 * j));
        __mmask64 neg = _mm512_movepi8_mask(wv);
        xv = _mm512_mask_sub_epi8(xv, neg, _mm512_setzero_si512(), xv);
        __m512i p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_abs_epi8(wv), xv);
        __m512 sc = _mm512_insertf32x8(_mm512_castps256_ps512(_mm256_set1_ps(h2f_512(b[j].d) * s->dx[j])),
                                       _mm256_set1_ps(h2f_512(b[j + 1].d) * s->dx[j + 1]), 1);
        if (j & 2)
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc1);
        else
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), sc, acc0);
    }
    if (j < nb) { /* odd block count: the last block in ymm lanes */
        __m256i wv = _mm256_loadu_si256((const __m256i *)b[j].qs);
        __m256i xv = _mm256_loadu_si256((const __m256i *)(s->xq + 32 * j));
        __mmask32 neg = _mm256_movepi8_mask(wv);
        xv = _mm256_mask_sub_epi8(xv, neg, _mm256_setzero_si256(), xv);
        __m256i p = DPB(_mm256_setzero_si256(), _mm256_abs_epi8(wv), xv);
        acc0 = _mm512_fmadd_ps(_mm512_zextps256_ps512(_mm256_cvtepi32_ps(p)),
                               _mm512_set1_ps(h2f_512(b[j].d) * s->dx[j]), acc0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}


/* mlxn_k4_unpack in one xmm (bytes 0-7 sc_0..7, 8-15 m_0..7) from the 16 bytes
 * at `scales` (12 scale bytes + 4 bytes of what follows them, unused): with
 * words w0..w2, sc_0..3 = w0 & 63, sc_4..7 = (w2 & 15) | (w0 >> 6) << 4,
 * m_0..3 = w1 & 63, m_4..7 = (w2 >> 4 & 15) | (w1 >> 6) << 4 per byte,
 * as [w0, w2, w1, w2] shifted and masked lane by lane. No round trip
 * through memory (the scalar version's word stores then 16-byte load
 * cannot be store-forwarded). */
TARGET_512 static inline __m128i k4_unpack_v(const uint8_t *scales) {
    __m128i v = _mm_loadu_si128((const __m128i *)scales);
    __m128i a = _mm_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* w0 w2 w1 w2 */
    __m128i b = _mm_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* w0 w0 w1 w1 */
    __m128i lo = _mm_and_si128(_mm_srlv_epi32(a, _mm_setr_epi32(0, 0, 0, 4)),
                               _mm_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m128i hi = _mm_and_si128(_mm_srli_epi32(b, 2), _mm_setr_epi32(0, 0x30303030, 0, 0x30303030));
    return _mm_or_si128(lo, hi);
}

/* q4_k / q5_k, super-block i: its 8 sub-block factors d·sc_j·dx_j
 * (returned in zmm lanes 0-7); its min term dmin·m_j·Σx_j goes into *accm. */
TARGET_512 ALWAYS_INLINE static inline __m512 k4_factors(const uint8_t *scales, uint16_t d, uint16_t dmin,
                                                         const dec_scratch *s, int64_t i, __m256 *accm) {
    __m128i sm = k4_unpack_v(scales);
    __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sm));
    __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_srli_si128(sm, 8)));
    __m256 f = _mm256_mul_ps(_mm256_mul_ps(sc, _mm256_set1_ps(h2f_512(d))), _mm256_loadu_ps(s->dx + 8 * i));
    *accm = _mm256_fmadd_ps(_mm256_mul_ps(mn, _mm256_set1_ps(h2f_512(dmin))), _mm256_loadu_ps(s->xg + 8 * i),
                            *accm);
    return _mm512_castps256_ps512(f);
}

/* k4_factors for super-blocks i and i + 1 at once (blk: block i, bs bytes
 * a block): i's factors in zmm lanes 0-7, i + 1's in 8-15; both min terms
 * into *accm (16 lanes). k4_unpack_v's steps run on both scale fields in
 * one ymm, and the four f16 d / dmin convert together. */
TARGET_512 ALWAYS_INLINE static inline __m512 k4_factors2(const uint8_t *blk, size_t bs, const dec_scratch *s,
                                                          int64_t i, __m512 *accm) {
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(blk + 4))),
                                        _mm_loadu_si128((const __m128i *)(blk + bs + 4)), 1);
    __m256i a = _mm256_shuffle_epi32(v, _MM_SHUFFLE(2, 1, 2, 0)); /* w0 w2 w1 w2, per block */
    __m256i b = _mm256_shuffle_epi32(v, _MM_SHUFFLE(1, 1, 0, 0)); /* w0 w0 w1 w1 */
    __m256i lo = _mm256_and_si256(_mm256_srlv_epi32(a, _mm256_setr_epi32(0, 0, 0, 4, 0, 0, 0, 4)),
                                  _mm256_setr_epi32(0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f, 0x3f3f3f3f,
                                                    0x0f0f0f0f, 0x3f3f3f3f, 0x0f0f0f0f));
    __m256i hi = _mm256_and_si256(_mm256_srli_epi32(b, 2),
                                  _mm256_setr_epi32(0, 0x30303030, 0, 0x30303030, 0, 0x30303030, 0, 0x30303030));
    /* qwords sc_i m_i sc_i+1 m_i+1 -> sc_i sc_i+1 m_i m_i+1 */
    __m256i sm = _mm256_permute4x64_epi64(_mm256_or_si256(lo, hi), _MM_SHUFFLE(3, 1, 2, 0));
    __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_castsi256_si128(sm)));
    __m512 mn = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm256_extracti128_si256(sm, 1)));
    uint32_t w0, w1; /* d | dmin << 16 */
    memcpy(&w0, blk, 4);
    memcpy(&w1, blk + bs, 4);
    const __m512 dd = _mm512_castps128_ps512(_mm_cvtph_ps(_mm_setr_epi32((int)w0, (int)w1, 0, 0)));
    const __m512i id = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i im = _mm512_setr_epi32(1, 1, 1, 1, 1, 1, 1, 1, 3, 3, 3, 3, 3, 3, 3, 3);
    *accm = _mm512_fmadd_ps(_mm512_mul_ps(mn, _mm512_permutexvar_ps(im, dd)), _mm512_loadu_ps(s->xg + 8 * i),
                            *accm);
    return _mm512_mul_ps(_mm512_mul_ps(sc, _mm512_permutexvar_ps(id, dd)), _mm512_loadu_ps(s->dx + 8 * i));
}

/* q4_k / q5_k: the products of 64-byte load c of a super-block, codes lo
 * (sub-blocks 4c, 4c+2: zmm lanes 0-7 / 8-15) and hi (4c+1, 4c+3), with x
 * at xq (the super-block's 256 int8), each scaled by its factor from fz
 * (the super-block's 8 from lane o). */
TARGET_512 ALWAYS_INLINE static inline void k4_accum(__m512i lo, __m512i hi, const int8_t *xq, int c, int o,
                                                     __m512 fz, __m512 *acc0, __m512 *acc1) {
    const __m512i i02 = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2);
    const __m512i ilo = _mm512_add_epi32(i02, _mm512_set1_epi32(o + (c ? 4 : 0)));
    const __m512i ihi = _mm512_add_epi32(i02, _mm512_set1_epi32(o + (c ? 5 : 1)));
    __m512i xa = _mm512_loadu_si512((const void *)(xq + 128 * c));
    __m512i xb = _mm512_loadu_si512((const void *)(xq + 128 * c + 64));
    __m512i pl = _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, xa);
    __m512i ph = _mm512_dpbusd_epi32(_mm512_setzero_si512(), hi, xb);
    *acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pl), _mm512_permutexvar_ps(ilo, fz), *acc0);
    *acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ph), _mm512_permutexvar_ps(ihi, fz), *acc1);
}

/* One q4_k super-block against its 256 x codes at xq, factors from lane o
 * of fz, into *acc0 / *acc1. */
TARGET_512 ALWAYS_INLINE static inline void q4k_sb(const mlxn_block_q4_k *blk, const int8_t *xq, int o, __m512 fz,
                                                   __m512 *acc0, __m512 *acc1) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    for (int c = 0; c < 2; c++) {
        __m512i v = _mm512_loadu_si512((const void *)(blk->qs + 64 * c));
        __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
        k4_accum(lo, hi, xq, c, o, fz, acc0, acc1);
    }
}
/* q5_k: x in XL_Q4K layout, as q4_k, with the 5th bit of each code from
 * qh: byte l of qh holds bit j for element l of sub-block j. A 64-byte
 * load c of qs holds sub-blocks (4c, 4c+2) in its low nibbles [bytes 0-31,
 * 32-63] and (4c+1, 4c+3) in its high; with qh in both 32-byte halves,
 * bit j of a byte is moved to bit 4 by one per-qword shift (left by 4 - j
 * for c = 0, right by j - 4 for c = 1: no bit crosses into the next byte)
 * and masked. q5k_sb: one super-block, as q4k_sb. */
TARGET_512 ALWAYS_INLINE static inline void q5k_sb(const mlxn_block_q5_k *blk, const int8_t *xq, int o, __m512 fz,
                                                   __m512 *acc0, __m512 *acc1) {
    const __m512i m4 = _mm512_set1_epi8(0x0F), b4 = _mm512_set1_epi8(0x10);
    /* shift counts per qword: [0-3] first 32 bytes, [4-7] the second */
    const __m512i sl_lo = _mm512_setr_epi64(4, 4, 4, 4, 2, 2, 2, 2); /* c = 0: bits 0, 2 (left) */
    const __m512i sl_hi = _mm512_setr_epi64(3, 3, 3, 3, 1, 1, 1, 1); /*        bits 1, 3 (left) */
    const __m512i sr_lo = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2); /* c = 1: bits 4, 6 (right) */
    const __m512i sr_hi = _mm512_setr_epi64(1, 1, 1, 1, 3, 3, 3, 3); /*        bits 5, 7 (right) */
    const __m512i hv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)blk->qh));
    for (int c = 0; c < 2; c++) {
        __m512i v = _mm512_loadu_si512((const void *)(blk->qs + 64 * c));
        __m512i hl = c ? _mm512_srlv_epi64(hv, sr_lo) : _mm512_sllv_epi64(hv, sl_lo);
        __m512i hh = c ? _mm512_srlv_epi64(hv, sr_hi) : _mm512_sllv_epi64(hv, sl_hi);
        __m512i lo = _mm512_ternarylogic_epi32(_mm512_and_si512(v, m4), hl, b4, 0xF8); /* lo | (hl & b4) */
        __m512i hi = _mm512_ternarylogic_epi32(_mm512_and_si512(_mm512_srli_epi16(v, 4), m4), hh, b4, 0xF8);
        k4_accum(lo, hi, xq, c, o, fz, acc0, acc1);
    }
}
/* q4_k: x in XL_Q4K layout. Per super-block the 8 sub-block factors
 * d·sc_j·dx_j form one vector; zmm lanes 0-7 / 8-15 of a 64-byte load's
 * products belong to sub-blocks (0,2) [low nibbles] or (1,3) [high]. */
/* k4_factors2 and dot_k45_512 read both block types' d, dmin and scales at
 * the same places */
_Static_assert(offsetof(mlxn_block_q5_k, dmin) == offsetof(mlxn_block_q4_k, dmin) &&
                   offsetof(mlxn_block_q5_k, scales) == offsetof(mlxn_block_q4_k, scales) &&
                   offsetof(mlxn_block_q4_k, scales) == 4,
               "q4_k / q5_k headers differ");
/* q4_k and q5_k rows (q5: the latter), super-blocks two at a time with
 * their factors together (k4_factors2), an odd last one alone. */
TARGET_512 ALWAYS_INLINE static inline float dot_k45_512(const uint8_t *row, bool q5, const dec_scratch *s,
                                                        int64_t K, size_t pf) {
    const size_t bs = q5 ? sizeof(mlxn_block_q5_k) : sizeof(mlxn_block_q4_k);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    __m512 acc2 = _mm512_setzero_ps(), acc3 = _mm512_setzero_ps(), accm2 = _mm512_setzero_ps();
    __m256 accm = _mm256_setzero_ps();
    int64_t i = 0;
#ifndef K4_SINGLE
    for (; i + 2 <= K / 256; i += 2) {
        const uint8_t *blk = row + (size_t)i * bs;
        for (size_t o = 0; o < 2 * bs; o += 64) PF_AHEAD(blk + o, pf);
        __m512 fz = k4_factors2(blk, bs, s, i, &accm2);
        /* two calls, not a loop over the two: GCC kept accumulators picked
         * by pointer in a loop in memory */
        if (q5) {
            q5k_sb((const mlxn_block_q5_k *)blk, s->xq + 256 * i, 0, fz, &acc0, &acc1);
            q5k_sb((const mlxn_block_q5_k *)(blk + bs), s->xq + 256 * (i + 1), 8, fz, &acc2, &acc3);
        } else {
            q4k_sb((const mlxn_block_q4_k *)blk, s->xq + 256 * i, 0, fz, &acc0, &acc1);
            q4k_sb((const mlxn_block_q4_k *)(blk + bs), s->xq + 256 * (i + 1), 8, fz, &acc2, &acc3);
        }
    }
#endif
    for (; i < K / 256; i++) {
        const uint8_t *blk = row + (size_t)i * bs;
        for (size_t o = 0; o < bs; o += 64) PF_AHEAD(blk + o, pf);
        const mlxn_block_q4_k *b4 = (const mlxn_block_q4_k *)blk; /* d, dmin, scales: same place in q5_k */
        __m512 fz = k4_factors(b4->scales, b4->d, b4->dmin, s, i, &accm);
        if (q5)
            q5k_sb((const mlxn_block_q5_k *)blk, s->xq + 256 * i, 0, fz, &acc0, &acc1);
        else
            q4k_sb(b4, s->xq + 256 * i, 0, fz, &acc0, &acc1);
    }
    __m512 t = _mm512_add_ps(_mm512_add_ps(acc0, acc1), _mm512_sub_ps(_mm512_add_ps(acc2, acc3), accm2));
    return _mm512_reduce_add_ps(t) - hsum256(accm);
}
TARGET_512 static float dot_q4_k_512(const void *wr, const dec_scratch *s, int64_t K, size_t pf) {
    return dot_k45_512(wr, false, s, K, pf);
}
TARGET_512 static float dot_q5_k_512(const void *wr, const dec_scratch *s, int64_t K, size_t pf) {
    return dot_k45_512(wr, true, s, K, pf);
}

/* q6_k, natural x: per 128-element half, one 64-byte ql load gives codes
 * for elements 0-63 (low nibbles) and 64-127 (high), the 2 high bits come
 * from qh (shifted per 32-byte half of the zmm). Sub-blocks are 16 long:
 * lane L of a product covers sub-block L/4 of its 64 elements. The -32
 * offset is Σ_i F_i·(Σ codes of sub-block i)·32, F_i = d·sc_i·dx. */
TARGET_512 static float dot_q6_k_512(const void *wr, const dec_scratch *s, int64_t K, size_t pf) {
    const mlxn_block_q6_k *b = wr;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m3 = _mm512_set1_epi8(3);
    const __m512i sh01 = _mm512_setr_epi64(0, 0, 0, 0, 2, 2, 2, 2);
    const __m512i sh23 = _mm512_setr_epi64(4, 4, 4, 4, 6, 6, 6, 6);
    const __m512i idx = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i l0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), cor = _mm512_setzero_ps();
    for (int64_t i = 0; i < K / 256; i++) {
        for (int o = 0; o < (int)sizeof *b; o += 64) PF_AHEAD((const uint8_t *)(b + i) + o, pf);
        __m512 sc = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)b[i].scales)));
        __m512 F = _mm512_mul_ps(_mm512_mul_ps(sc, _mm512_set1_ps(h2f_512(b[i].d))),
                                 _mm512_permutexvar_ps(idx, _mm512_loadu_ps(s->dx + 8 * i)));
        cor = _mm512_fmadd_ps(F, _mm512_loadu_ps(s->xs16 + 16 * i), cor);
        const int8_t *xq = s->xq + 256 * i;
        for (int h = 0; h < 2; h++) {
            __m512i l = _mm512_loadu_si512((const void *)(b[i].ql + 64 * h));
            __m512i hv = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(b[i].qh + 32 * h)));
            __m512i h01 = _mm512_and_si512(_mm512_srlv_epi64(hv, sh01), m3);
            __m512i h23 = _mm512_and_si512(_mm512_srlv_epi64(hv, sh23), m3);
            __m512i q01 = _mm512_or_si512(_mm512_and_si512(l, m4), _mm512_slli_epi16(h01, 4));
            __m512i q23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                          _mm512_slli_epi16(h23, 4));
            __m512i xa = _mm512_loadu_si512((const void *)(xq + 128 * h));
            __m512i xb = _mm512_loadu_si512((const void *)(xq + 128 * h + 64));
            __m512i pa = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q01, xa);
            __m512i pb = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q23, xb);
            __m512i ia = _mm512_add_epi32(l0, _mm512_set1_epi32(8 * h));
            __m512i ib = _mm512_add_epi32(ia, _mm512_set1_epi32(4));
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pa), _mm512_permutexvar_ps(ia, F), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pb), _mm512_permutexvar_ps(ib, F), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) - 32.0f * _mm512_reduce_add_ps(cor);
}

/* Widen row n's G = K/group scales into sbuf and return Σ_g b_g·Σx_g
 * (Σx per group in xgg). */
TARGET_512 static float mlx_row_prep(const mlxn_qmat *w, int64_t n, const dec_scratch *s) {
    const int64_t G = w->K / w->group;
    const size_t base = (size_t)(n * G);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t g = 0; g < G; g += 16) {
        __mmask16 m = G - g >= 16 ? 0xFFFF : (__mmask16)((1u << (G - g)) - 1);
        __m512 sc, bi;
        /* masked loads only for the tail: they are slow when they miss cache */
        if (w->sb_type == MLXN_F32) {
            const float *ps = (const float *)w->scales + base + g, *pb = (const float *)w->biases + base + g;
            sc = m == 0xFFFF ? _mm512_loadu_ps(ps) : _mm512_maskz_loadu_ps(m, ps);
            bi = m == 0xFFFF ? _mm512_loadu_ps(pb) : _mm512_maskz_loadu_ps(m, pb);
        } else {
            const uint16_t *ps = (const uint16_t *)w->scales + base + g,
                           *pb = (const uint16_t *)w->biases + base + g;
            __m256i hs = m == 0xFFFF ? _mm256_loadu_si256((const __m256i *)ps) : _mm256_maskz_loadu_epi16(m, ps);
            __m256i hb = m == 0xFFFF ? _mm256_loadu_si256((const __m256i *)pb) : _mm256_maskz_loadu_epi16(m, pb);
            if (w->sb_type == MLXN_F16) {
                sc = _mm512_cvtph_ps(hs);
                bi = _mm512_cvtph_ps(hb);
            } else {
                sc = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hs), 16));
                bi = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(hb), 16));
            }
        }
        _mm512_storeu_ps(s->sbuf + g, sc);
        acc = _mm512_fmadd_ps(bi, _mm512_maskz_loadu_ps(m, s->xgg + g), acc);
    }
    return _mm512_reduce_add_ps(acc);
}

/* cnt (1-16) scale-dtype values at p → f32 lanes 0..cnt-1, zero above.
 * Masked loads that miss cache are slow on this CPU (Zen 4: a 256-bit
 * masked load at a row's end took ~20% of a K=576 decode), so a short run
 * is read with a plain full-width load and masked in registers when `room`
 * says 16 values from p stay inside the array; masked loads only otherwise
 * (the last row). */
TARGET_512 static inline __m512 load_sb(const void *p, mlxn_dtype t, int cnt, bool room) {
    const __mmask16 m = (__mmask16)((1u << cnt) - 1);
    if (t == MLXN_F32) {
        if (cnt == 16) return _mm512_loadu_ps(p);
        if (cnt == 8) return _mm512_zextps256_ps512(_mm256_loadu_ps(p));
        if (cnt == 4) return _mm512_zextps128_ps512(_mm_loadu_ps(p));
        if (!room) return _mm512_maskz_loadu_ps(m, p);
        return _mm512_castsi512_ps(_mm512_and_si512(_mm512_loadu_si512(p), _mm512_movm_epi32(m)));
    }
    __m256i h;
    if (cnt == 16)
        h = _mm256_loadu_si256((const __m256i *)p);
    else if (cnt == 8)
        h = _mm256_zextsi128_si256(_mm_loadu_si128((const __m128i *)p));
    else if (cnt == 4)
        h = _mm256_zextsi128_si256(_mm_loadl_epi64((const __m128i *)p));
    else if (room) /* an AND, not maskz_mov: compilers fold that into a masked load */
        h = _mm256_and_si256(_mm256_loadu_si256((const __m256i *)p), _mm256_movm_epi16(m));
    else
        h = _mm256_maskz_loadu_epi16(m, p);
    if (t == MLXN_F16) return _mm512_cvtph_ps(h);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* MLX 4-bit and 8-bit, x in XL_MLX4 / natural layout. Per 16 blocks of 32
 * (a "span", fewer at the row's end) the scales and biases are read once:
 * F[b] = scale(block b)·dx[block b] in a register, and the bias term
 * Σ_g b_g·Σx_g accumulates as a vector. The span's steps of 64 code bytes
 * then take their per-lane factor from F (lane L of a dpbusd covers 4 codes
 * of block 4·step + L/4 (4-bit: 128 elements per step) or 2·step + L/8
 * (8-bit: 64)).
 * A last step of fewer blocks (K % 128, or K % 64 for 8-bit) loads only its
 * code bytes (zero above) and its factors past the row are zero. */
TARGET_512 static inline __m512i load_bytes16(const uint8_t *p, int n16) {
    if (n16 == 1) return _mm512_zextsi128_si512(_mm_loadu_si128((const __m128i *)p));
    __m512i v = _mm512_zextsi256_si512(_mm256_loadu_si256((const __m256i *)p));
    if (n16 == 3) v = _mm512_inserti32x4(v, _mm_loadu_si128((const __m128i *)(p + 32)), 2);
    return v;
}
#define PF_MLX 16
/* The MLX row PF_MLX rows past codes q, scales ps and biases ps (rowb code
 * bytes and sbb bytes of each a row), asked for into L1: short rows, whose
 * kernels do not prefetch inside their loop (pf = 0). */
TARGET_512 ALWAYS_INLINE static inline void mlx_pf_row_ahead(const uint8_t *q, const uint8_t *ps, const uint8_t *pb,
                                                             size_t rowb, size_t sbb) {
    const uint8_t *qn = q + PF_MLX * rowb, *sn = ps + PF_MLX * sbb, *bn = pb + PF_MLX * sbb;
    for (size_t o = 0; o < rowb + 63; o += 64) _mm_prefetch((const char *)(qn + o), _MM_HINT_T0);
    for (size_t o = 0; o < sbb + 63; o += 64) {
        _mm_prefetch((const char *)(sn + o), _MM_HINT_T0);
        _mm_prefetch((const char *)(bn + o), _MM_HINT_T0);
    }
}

/* The span of rb (<= 16) blocks from block b0 of MLX row n (scales ps,
 * biases pb, group = 32 << gsh): its bias term Σ_g b_g·Σx_g added to *accb,
 * and F[b] = scale(block b0 + b)·dx[b0 + b] returned (lg: block lane ->
 * group lane). pfs: prefetch distance of the scale streams (0: none). */
TARGET_512 ALWAYS_INLINE static inline __m512 mlx_span_factors(const mlxn_qmat *w, int64_t n, const dec_scratch *s,
                                                               const uint8_t *ps, const uint8_t *pb, int64_t b0,
                                                               int rb, int gsh, size_t pfs, __m512i lg,
                                                               __m512 *accb) {
    const int64_t G = w->K >> (5 + gsh), g0 = b0 >> gsh; /* K / group, without a division */
    const mlxn_dtype t = w->sb_type;
    const size_t es = t == MLXN_F32 ? 4 : 2;
    const int ng = rb >> gsh;
    const bool room = (n * G + g0 + 16) <= w->N * G;
    PF_AHEAD(ps + (size_t)g0 * es, pfs); /* at most 32 bytes per span */
    PF_AHEAD(pb + (size_t)g0 * es, pfs);
    __m512 sc = load_sb(ps + (size_t)g0 * es, t, ng, room);
    __m512 bi = load_sb(pb + (size_t)g0 * es, t, ng, room);
    *accb = _mm512_fmadd_ps(bi, _mm512_loadu_ps(s->xgg + g0), *accb);
    return _mm512_mul_ps(_mm512_permutexvar_ps(lg, sc), _mm512_loadu_ps(s->dx + b0));
}

/* A 4-bit step's products against both parts of x (xq, and xq2 at the
 * same offset): (Σ q·c)·X2_SCALE + Σ q·c2 per lane. */
TARGET_512 ALWAYS_INLINE static inline __m512i nib_dot2(__m512i v, const int8_t *xq, const int8_t *xq2) {
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    const __m512i lo = _mm512_and_si512(v, m4), hi = _mm512_and_si512(_mm512_srli_epi16(v, 4), m4);
    const __m512i d = _mm512_dpbusd_epi32(
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, _mm512_loadu_si512((const void *)xq)), hi,
        _mm512_loadu_si512((const void *)(xq + 64)));
    return _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_slli_epi32(d, 7), lo, _mm512_loadu_si512((const void *)xq2)),
                               hi, _mm512_loadu_si512((const void *)(xq2 + 64)));
}
_Static_assert(X2_SCALE == 1 << 7, "nib_dot2 / byte_dot2 shift by 7");
/* The same for 64 byte codes v against 64 x codes: one VPDPBUSD, or (two)
 * two with the first's products times X2_SCALE. */
TARGET_512 ALWAYS_INLINE static inline __m512i byte_dot2(__m512i v, const int8_t *xq, const int8_t *xq2, bool two) {
    const __m512i d = _mm512_dpbusd_epi32(_mm512_setzero_si512(), v, _mm512_loadu_si512((const void *)xq));
    return two ? _mm512_dpbusd_epi32(_mm512_slli_epi32(d, 7), v, _mm512_loadu_si512((const void *)xq2)) : d;
}

/* Step j of an MLX 4/8-bit span: the 64 code bytes v against their x codes
 * (4-bit: 128 at xs + 128·j, 8-bit: 64 at xs + 64·j; two: the residual's
 * at xs2 likewise), times the factors of F at lanes li, into acc0 (even
 * steps) or acc1 (odd). */
TARGET_512 ALWAYS_INLINE static inline void mlx48_step(__m512i v, int bits, bool two, int j, const int8_t *xs,
                                                       const int8_t *xs2, __m512i li, __m512 F, __m512 *acc0,
                                                       __m512 *acc1) {
    const __m512i d = bits == 4 ? (two ? nib_dot2(v, xs + 128 * j, xs2 + 128 * j) : nib_dot(v, xs + 128 * j))
                                : byte_dot2(v, xs + 64 * j, xs2 + 64 * j, two);
    const __m512 f = _mm512_permutexvar_ps(li, F);
    if (j & 1)
        *acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, *acc1);
    else
        *acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, *acc0);
}

TARGET_512 ALWAYS_INLINE static inline __m512 acc_mlx48_512(const mlxn_qmat *w, int64_t n,
                                                      const dec_scratch *s, int bits, bool two,
                                                      size_t pf) {
    const int64_t K = w->K, nblk = K / 32;
    const int gsh = w->group == 32 ? 0 : w->group == 64 ? 1 : 2; /* group = 32 << gsh */
    const int64_t G = K >> (5 + gsh); /* K / group: no division a row (they cost short rows) */
    const mlxn_dtype t = w->sb_type;
    const size_t es = t == MLXN_F32 ? 4 : 2, bpb = (size_t)(4 * bits); /* code bytes per block */
    const int bps = 64 / (int)bpb;                                      /* blocks per 64-byte step */
    const uint8_t *q = (const uint8_t *)w->w + (size_t)n * (size_t)(K / 8 * bits);
    const uint8_t *ps = (const uint8_t *)w->scales + (size_t)(n * G) * es;
    const uint8_t *pb = (const uint8_t *)w->biases + (size_t)(n * G) * es;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lg = _mm512_srli_epi32(iota, gsh);              /* block lane → group lane */
    const __m512i lb = _mm512_srli_epi32(iota, bits == 4 ? 2 : 3); /* dpbusd lane → block */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), accb = _mm512_setzero_ps();
    /* Prefetch the row PF_MLX rows ahead, all three streams: the hardware
     * prefetcher alone left K = 576 ~20% short of the read bandwidth
     * (3072 x 576, 2 threads: 28.4 -> 23 us). Issued per row, next to its
     * loads; the same prefetches from the row loop, 4 rows at a time or per
     * row through a general helper, were slower (measured). */
    /* as many rows ahead: pf · G·es / (K/8·bits) = pf · es / (4 · bits << gsh), a shift */
    const size_t pfs = (pf * es) >> (bits == 4 ? 4 + gsh : 5 + gsh);
    if (!pf && n + PF_MLX < w->N) mlx_pf_row_ahead(q, ps, pb, (size_t)(K / 8 * bits), (size_t)G * es);
    /* Per span: the 16 factors stay in a register and each step picks its
     * lanes with one permute (a round trip through sbuf cost a failed
     * store-to-load forward per step: ~15% of a K = 576 row). */
    int64_t b0 = 0;
#ifndef MLX_SPAN_GENERAL
    /* Whole spans first, their steps unrolled (constant lanes, no length
     * tests). */
    for (const int64_t nfull = nblk / 16 * 16; b0 < nfull; b0 += 16) {
        const __m512 F = mlx_span_factors(w, n, s, ps, pb, b0, 16, gsh, pfs, lg, &accb);
        const uint8_t *qs = q + (size_t)b0 * bpb;
        const int8_t *xs = s->xq + (size_t)b0 * 32, *xs2 = s->xq2 + (size_t)b0 * 32;
        if (pf)
            for (int j = 0; j < 16 / bps; j++) _mm_prefetch((const char *)(qs + 64 * j) + pf, PF_HINT);
#pragma GCC unroll 8
        for (int j = 0; j < 16 / bps; j++) {
            const __m512i v = _mm512_loadu_si512((const void *)(qs + 64 * j));
            mlx48_step(v, bits, two, j, xs, xs2, _mm512_add_epi32(lb, _mm512_set1_epi32(bps * j)), F, &acc0, &acc1);
        }
    }
#endif
    for (; b0 < nblk; b0 += 16) { /* the rest: a last span of fewer blocks */
        const int rb = nblk - b0 < 16 ? (int)(nblk - b0) : 16;
        const __m512 F = mlx_span_factors(w, n, s, ps, pb, b0, rb, gsh, pfs, lg, &accb);
        const uint8_t *qs = q + (size_t)b0 * bpb;
        const int8_t *xs = s->xq + (size_t)b0 * 32, *xs2 = s->xq2 + (size_t)b0 * 32;
        const int nst = (rb + bps - 1) / bps; /* steps in this span; the last may be short */
        for (int j = 0; j < nst; j++) {
            const int rem = rb - j * bps < bps ? rb - j * bps : bps;
            PF_AHEAD(qs + 64 * j, pf);
            __m512i v = rem == bps ? _mm512_loadu_si512((const void *)(qs + 64 * j))
                                   : load_bytes16(qs + 64 * j, (int)((size_t)rem * bpb / 16));
            mlx48_step(v, bits, two, j, xs, xs2, _mm512_add_epi32(lb, _mm512_set1_epi32(bps * j)), F, &acc0, &acc1);
        }
    }
    return _mm512_add_ps(_mm512_add_ps(acc0, acc1), accb); /* lanes sum to the dot */
}

/* Above this K, MLX 4/8-bit rows with x in two parts (K·2 code bytes for
 * 4-bit weights: past half of L1 at 8192) take acc_mlx48_x4. Dev EPYC, 2
 * threads, min of 3, µs, one row at a time / four: L3-resident 1024 x 8192
 * mlx-q4-g64 84.2 / 83.3, mlx-q8-g64 92.0 / 103.0; 1024 x 4096 44.1 /
 * 44.5, 48.4 / 54.0; 512 x 14336 98.3 / 75.1, 134.6 / 92.9 (int8 alone,
 * one row: 55.8 / 82.4); from DRAM 4096 x 14336 1503.6 / 1028.7, 2627.9 /
 * 2011.4 (int8 alone 745.9 / 1733.2, medians 1241 / 2162 against four
 * rows' 1197 / 2262: the read bandwidth wandered). With int8 x alone four
 * rows ran no faster (L3: 57.6 against 55.8 for mlx-q4-g64), so they stay
 * one at a time. */
#define X4_K 8192
/* Four MLX 4/8-bit rows n..n+3 at once, for rows of whole spans (K a
 * multiple of 512) long enough to prefetch in the loop (pf > 0), x in two
 * parts: each x vector (both parts) is loaded once for the four rows, so x's
 * reads a weight byte drop 4x. Why: with x in two parts its codes are 4
 * bytes a 4-bit weight byte; at K = 14336 (28 KB of them, L1 is 32 KB)
 * the one-row dot re-read them from L2 for every row and ran at half the
 * read bandwidth (dev EPYC, 2 threads, 4096 x 14336 mlx-q4-g64 from DRAM,
 * min of 3: int8 alone 704 us, two parts one row at a time 1411 us).
 * out[r] = row n + r's lanes (they sum to its dot). */
TARGET_512 ALWAYS_INLINE static inline void acc_mlx48_x4(const mlxn_qmat *w, int64_t n, const dec_scratch *s,
                                                         int bits, size_t pf, __m512 out[4]) {
    const int64_t K = w->K, nblk = K / 32;
    const int gsh = w->group == 32 ? 0 : w->group == 64 ? 1 : 2; /* group = 32 << gsh */
    const int64_t G = K >> (5 + gsh);
    const mlxn_dtype t = w->sb_type;
    const size_t es = t == MLXN_F32 ? 4 : 2, bpb = (size_t)(4 * bits), rowb = (size_t)(K / 8 * bits);
    const size_t sbr = (size_t)G * es;                                 /* scale bytes a row */
    const int bps = 64 / (int)bpb;                                     /* blocks per 64-byte step */
    const uint8_t *q = (const uint8_t *)w->w + (size_t)n * rowb;
    const uint8_t *ps = (const uint8_t *)w->scales + (size_t)(n * G) * es;
    const uint8_t *pb = (const uint8_t *)w->biases + (size_t)(n * G) * es;
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lg = _mm512_srli_epi32(iota, gsh);
    const __m512i lb = _mm512_srli_epi32(iota, bits == 4 ? 2 : 3);
    const size_t pfs = (pf * es) >> (bits == 4 ? 4 + gsh : 5 + gsh);
    __m512 acc[4], accb[4];
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) acc[r] = accb[r] = _mm512_setzero_ps();
    for (int64_t b0 = 0; b0 < nblk; b0 += 16) {
        __m512 F[4];
#pragma GCC unroll 4
        for (int r = 0; r < 4; r++)
            F[r] = mlx_span_factors(w, n + r, s, ps + r * sbr, pb + r * sbr, b0, 16, gsh, pfs, lg, &accb[r]);
        const uint8_t *qs = q + (size_t)b0 * bpb;
        const int8_t *xs = s->xq + (size_t)b0 * 32, *xs2 = s->xq2 + (size_t)b0 * 32;
        { /* the four rows advance together: what is needed pf bytes of
           * reads from now lies pf / 4 further in each row, past the row's
           * end in the next four rows */
            size_t o = (size_t)b0 * bpb + pf / 4;
            const uint8_t *pq = o < rowb ? q + o : q + 4 * rowb + (o - rowb);
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++)
#pragma GCC unroll 8
                for (int j = 0; j < 16 / bps; j++) _mm_prefetch((const char *)(pq + r * rowb + 64 * j), PF_HINT);
        }
#pragma GCC unroll 2
        for (int j = 0; j < 16 / bps; j++) {
            const __m512i li = _mm512_add_epi32(lb, _mm512_set1_epi32(bps * j));
            /* the four rows' x loads are the same addresses: loaded once */
#pragma GCC unroll 4
            for (int r = 0; r < 4; r++) {
                const __m512i v = _mm512_loadu_si512((const void *)(qs + r * rowb + 64 * j));
                const __m512i d = bits == 4 ? nib_dot2(v, xs + 128 * j, xs2 + 128 * j)
                                            : byte_dot2(v, xs + 64 * j, xs2 + 64 * j, true);
                acc[r] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(li, F[r]), acc[r]);
            }
        }
    }
#pragma GCC unroll 4
    for (int r = 0; r < 4; r++) out[r] = _mm512_add_ps(acc[r], accb[r]);
}

/* MLX 2/3/5/6-bit without VBMI: f32 dot with x itself,
 * Σ_g s_g·Σ_k q_k·x_k + Σ_g b_g·Σx_g; codes unpacked 16 at a time as in
 * mlx_dequant_row_512. */
TARGET_512 static float dot_mlx_any_512(const mlxn_qmat *w, int64_t n, const float *x,
                                        const dec_scratch *s) {
    const int bits = w->bits, group = w->group;
    const int64_t K = w->K;
    const size_t rowb = (size_t)(K / 8 * bits);
    const uint8_t *row = (const uint8_t *)w->w + (size_t)n * rowb;
    __m512i vidx, vsh;
    mlx_unpack_tables(bits, &vidx, &vsh);
    const __m512i mask = _mm512_set1_epi32((1 << bits) - 1);
    const __mmask16 lm = (__mmask16)((1u << (2 * bits)) - 1);
    float bias = mlx_row_prep(w, n, s);
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
    for (int64_t g0 = 0; g0 < K; g0 += group) {
        const __m512 vs = _mm512_set1_ps(s->sbuf[g0 / group]);
        for (int64_t k = g0; k < g0 + group; k += 32) {
            size_t o0 = (size_t)(k / 8 * bits), o1 = (size_t)((k + 16) / 8 * bits);
            /* plain loads where 16 bytes stay inside the row (masked loads
             * that miss cache are slow on this CPU); masked at the end */
            __m128i r0 = o0 + 16 <= rowb ? _mm_loadu_si128((const __m128i *)(row + o0))
                                         : _mm_maskz_loadu_epi8(lm, row + o0);
            __m128i r1 = o1 + 16 <= rowb ? _mm_loadu_si128((const __m128i *)(row + o1))
                                         : _mm_maskz_loadu_epi8(lm, row + o1);
            __m512i v0 = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(r0), vidx);
            __m512i v1 = _mm512_shuffle_epi8(_mm512_broadcast_i32x4(r1), vidx);
            __m512 q0 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v0, vsh), mask));
            __m512 q1 = _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srlv_epi32(v1, vsh), mask));
            acc0 = _mm512_fmadd_ps(_mm512_mul_ps(q0, vs), _mm512_loadu_ps(x + k), acc0);
            acc1 = _mm512_fmadd_ps(_mm512_mul_ps(q1, vs), _mm512_loadu_ps(x + k + 16), acc1);
        }
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + bias;
}

/* acc_mlxb_512's byte-permute (qword i <- bytes bits·i .. bits·i + 7) and
 * multishift (code j of a qword at bit bits·j) controls, per bits. */
#define MLXB_Q(b, i) (b) * (i), (b) * (i) + 1, (b) * (i) + 2, (b) * (i) + 3, (b) * (i) + 4, (b) * (i) + 5, \
                     (b) * (i) + 6, (b) * (i) + 7
#define MLXB_TI(b) {MLXB_Q(b, 0), MLXB_Q(b, 1), MLXB_Q(b, 2), MLXB_Q(b, 3), MLXB_Q(b, 4), MLXB_Q(b, 5), \
                    MLXB_Q(b, 6), MLXB_Q(b, 7)}
#define MLXB_C(b) 0, (b), 2 * (b), 3 * (b), 4 * (b), 5 * (b), 6 * (b), 7 * (b)
#define MLXB_TC(b) {MLXB_C(b), MLXB_C(b), MLXB_C(b), MLXB_C(b), MLXB_C(b), MLXB_C(b), MLXB_C(b), MLXB_C(b)}
_Alignas(64) static const uint8_t k_mlxb_ti[7][64] = {[2] = MLXB_TI(2), [3] = MLXB_TI(3), [5] = MLXB_TI(5),
                                                      [6] = MLXB_TI(6)};
_Alignas(64) static const uint8_t k_mlxb_tc[7][64] = {[2] = MLXB_TC(2), [3] = MLXB_TC(3), [5] = MLXB_TC(5),
                                                      [6] = MLXB_TC(6)};
#undef MLXB_Q
#undef MLXB_TI
#undef MLXB_C
#undef MLXB_TC

/* MLX 2/3/5/6-bit with int8 x (natural layout), on CPUs with AVX-512 VBMI.
 * A step is 64 elements = 8·bits code bytes: the 8 codes of qword i are
 * bits 8·bits·i .. of the step, i.e. bytes bits·i .. bits·i + 7, so one
 * byte permute puts them in qword i and one multishift takes code j from
 * bit bits·j of it (then masked to `bits` bits). Spans of 16 blocks, F per
 * block and the bias term as in acc_mlx48_512 (lane L of a dpbusd covers
 * codes 4L..4L+3: block 2·step + L/8). Loads read 64 bytes, past the step:
 * codes past the row meet zero x codes and zero factors; only a load that
 * would pass the matrix's end is masked. Whole spans run their 8 steps
 * unrolled (as acc_mlx48_512). */
TARGET_512V ALWAYS_INLINE static inline __m512i mlxb_step(const uint8_t *p, const uint8_t *qend, __m512i idx,
                                                         __m512i ctl, __m512i mask, bool two, const int8_t *x,
                                                         const int8_t *x2) {
    __m512i v = p + 64 <= qend ? _mm512_loadu_si512((const void *)p)
                               : _mm512_maskz_loadu_epi8((__mmask64)(~0ULL >> (64 - (qend - p))), p);
    v = _mm512_and_si512(_mm512_multishift_epi64_epi8(ctl, _mm512_permutexvar_epi8(idx, v)), mask);
    return byte_dot2(v, x, x2, two);
}
TARGET_512V ALWAYS_INLINE static inline __m512 acc_mlxb_body(const mlxn_qmat *w, int64_t n, const dec_scratch *s,
                                                             bool two, size_t pf) {
    const int bits = w->bits;
    const int64_t K = w->K, nblk = K / 32;
    const int gsh = w->group == 32 ? 0 : w->group == 64 ? 1 : 2; /* group = 32 << gsh */
    const int64_t G = K >> (5 + gsh);                           /* K / group */
    const mlxn_dtype t = w->sb_type;
    const size_t es = t == MLXN_F32 ? 4 : 2, rowb = (size_t)(K / 8 * bits), stb = (size_t)(8 * bits);
    const uint8_t *q = (const uint8_t *)w->w + (size_t)n * rowb, *qend = (const uint8_t *)w->w + (size_t)w->N * rowb;
    const uint8_t *ps = (const uint8_t *)w->scales + (size_t)(n * G) * es;
    const uint8_t *pb = (const uint8_t *)w->biases + (size_t)(n * G) * es;
    const __m512i idx = _mm512_load_si512((const void *)k_mlxb_ti[bits]);
    const __m512i ctl = _mm512_load_si512((const void *)k_mlxb_tc[bits]);
    const __m512i mask = _mm512_set1_epi8((char)((1 << bits) - 1));
    const __m512i iota = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i lg = _mm512_srli_epi32(iota, gsh); /* block lane → group lane */
    const __m512i lb = _mm512_srli_epi32(iota, 3);   /* dpbusd lane → block of the step */
    __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps(), accb = _mm512_setzero_ps();
    /* as many rows ahead: pf · G·es / rowb = pf · es / (4·bits << gsh) */
    const size_t pfs = (size_t)((uint32_t)(pf * es) / ((uint32_t)(4 * bits) << gsh));
    if (!pf && n + PF_MLX < w->N) mlx_pf_row_ahead(q, ps, pb, rowb, (size_t)G * es); /* short rows */
    int64_t b0 = 0;
    for (const int64_t nfull = nblk / 16 * 16; b0 < nfull; b0 += 16) {
        const __m512 F = mlx_span_factors(w, n, s, ps, pb, b0, 16, gsh, pfs, lg, &accb);
        const uint8_t *qs = q + (size_t)b0 * 4 * (size_t)bits;
        const int8_t *xs = s->xq + (size_t)b0 * 32, *xs2 = s->xq2 + (size_t)b0 * 32;
        if (pf)
            for (int j = 0; j < 8; j++) _mm_prefetch((const char *)(qs + (size_t)j * stb) + pf, PF_HINT);
#pragma GCC unroll 8
        for (int j = 0; j < 8; j++) {
            const __m512i d = mlxb_step(qs + (size_t)j * stb, qend, idx, ctl, mask, two, xs + 64 * j, xs2 + 64 * j);
            const __m512 f = _mm512_permutexvar_ps(_mm512_add_epi32(lb, _mm512_set1_epi32(2 * j)), F);
            if (j & 1)
                acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc1);
            else
                acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc0);
        }
    }
    for (; b0 < nblk; b0 += 16) { /* the rest: a last span of fewer blocks */
        const int rb = (int)(nblk - b0);
        const __m512 F = mlx_span_factors(w, n, s, ps, pb, b0, rb, gsh, pfs, lg, &accb);
        const uint8_t *qs = q + (size_t)b0 * 4 * (size_t)bits;
        const int8_t *xs = s->xq + (size_t)b0 * 32, *xs2 = s->xq2 + (size_t)b0 * 32;
        for (int j = 0; j < (rb + 1) / 2; j++) {
            PF_AHEAD(qs + (size_t)j * stb, pf);
            const __m512i d = mlxb_step(qs + (size_t)j * stb, qend, idx, ctl, mask, two, xs + 64 * j, xs2 + 64 * j);
            const __m512 f = _mm512_permutexvar_ps(_mm512_add_epi32(lb, _mm512_set1_epi32(2 * j)), F);
            acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), f, acc0);
        }
    }
    return _mm512_add_ps(_mm512_add_ps(acc0, acc1), accb); /* lanes sum to the dot */
}

/* The dots as calls: inlined 4x into the row loop they were faster at
 * K = 576 but up to 2x slower at K >= 1536 (measured; cause not found).
 * MLX ones twice: x in two parts, and (suffix i8) int8 alone. */
#define NOINLINE __attribute__((noinline))
TARGET_512V NOINLINE static __m512 acc_mlxb_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf) {
    return acc_mlxb_body(w, n, s, true, pf);
}
TARGET_512V NOINLINE static __m512 acc_mlxbi8_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf) {
    return acc_mlxb_body(w, n, s, false, pf);
}
TARGET_512 NOINLINE static __m512 acc_mlx4_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s,
                                               size_t pf) {
    return acc_mlx48_512(w, n, s, 4, true, pf);
}
TARGET_512 NOINLINE static __m512 acc_mlx8_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s,
                                               size_t pf) {
    return acc_mlx48_512(w, n, s, 8, true, pf);
}
TARGET_512 NOINLINE static __m512 acc_mlx4i8_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf) {
    return acc_mlx48_512(w, n, s, 4, false, pf);
}
TARGET_512 NOINLINE static __m512 acc_mlx8i8_512(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf) {
    return acc_mlx48_512(w, n, s, 8, false, pf);
}
TARGET_512 NOINLINE static void acc4_mlx4(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf,
                                          __m512 out[4]) {
    acc_mlx48_x4(w, n, s, 4, pf, out);
}
TARGET_512 NOINLINE static void acc4_mlx8(const mlxn_qmat *w, int64_t n, const dec_scratch *s, size_t pf,
                                          __m512 out[4]) {
    acc_mlx48_x4(w, n, s, 8, pf, out);
}
TARGET_512 NOINLINE static __m512 acc_q4_0_512(const void *b, const dec_scratch *s, int64_t K,
                                               size_t pf) {
    return acc_q4x4_512(b, false, s, K, pf);
}
TARGET_512 NOINLINE static __m512 acc_q4_1_512(const void *b, const dec_scratch *s, int64_t K,
                                               size_t pf) {
    return acc_q4x4_512(b, true, s, K, pf);
}
#undef NOINLINE

#define reduce4 mlxn_reduce4_512

#ifndef PF_BYTES
#define PF_BYTES 6144
#endif
/* Software prefetch of the weight rows PF_BYTES ahead of the row loop (all
 * of a row's streams: MLX codes, scales and biases), for the one-row-at-a-
 * time kernels (q8_0, k-quants, MLX 2/3/5/6-bit) on rows up to PF_LONG_ROW
 * (MLX 2/3/5/6-bit at any length): the hardware prefetcher alone leaves
 * small-K rows short of the read bandwidth (dev EPYC, 2 threads: q8_0
 * 3072 x 576 45.0 -> 38.8 us, 49152 x 576 755 -> 646 us). */
typedef struct pf_rows {
    const uint8_t *p[3];
    size_t rb[3]; /* bytes per row of each stream (0: none) */
    int64_t ahead, N;
} pf_rows;
static pf_rows pf_init(const mlxn_qmat *w) {
    pf_rows f = {{0}, {0}, 0, w->N};
    if (w->kind == MLXN_QKIND_MLX) {
        size_t es = w->sb_type == MLXN_F32 ? 4 : 2, G = (size_t)(w->K / w->group);
        f.p[0] = w->w, f.rb[0] = (size_t)(w->K / 8 * w->bits);
        f.p[1] = w->scales, f.p[2] = w->biases, f.rb[1] = f.rb[2] = G * es;
    } else {
        f.p[0] = w->w, f.rb[0] = w->row_bytes;
    }
    size_t tot = f.rb[0] + f.rb[1] + f.rb[2];
    f.ahead = (int64_t)((PF_BYTES + tot - 1) / tot);
    return f;
}
/* Prefetch rows [n + ahead, n + ahead + cnt) (those below N). */
TARGET_512 ALWAYS_INLINE static inline void pf_rows_at(const pf_rows *f, int64_t n, int64_t cnt) {
    int64_t a = n + f->ahead, b = a + cnt < f->N ? a + cnt : f->N;
    if (a >= b) return;
    for (int i = 0; i < 3 && f->rb[i]; i++) {
        const uint8_t *lo = f->p[i] + (size_t)a * f->rb[i], *hi = f->p[i] + (size_t)b * f->rb[i];
        for (const uint8_t *q = (const uint8_t *)((uintptr_t)lo & ~(uintptr_t)63); q < hi; q += 64)
            _mm_prefetch((const char *)q, _MM_HINT_T0);
    }
}

/* Weight rows [n0,n1) against the M prepared x rows, 4 weight rows at a time
 * (they stay in L1 across the x rows; one reduce4 per 4 outputs).
 * DOT(n, sm) is an expression giving the unreduced lanes for row n, x slice
 * sm; pf (in its scope) the in-loop prefetch distance. */
#define DEC_ROWS(name, DOT)                                                                       \
    TARGET_512 static void name(const mlxn_qmat *w, const dec_scratch *s, float *y, int64_t M,   \
                                int64_t n0, int64_t n1, size_t pf) {                             \
        const int64_t N = w->N;                                                                  \
        /* GGML rows' prefetch distance in rows (ggml_row_pf), once a call */                    \
        const int64_t ahead = w->row_bytes ? (int64_t)(PF_BYTES / w->row_bytes) + 1 : 0;         \
        (void)ahead;                                                                             \
        int64_t n = n0;                                                                          \
        for (; n + 4 <= n1; n += 4)                                                              \
            for (int64_t m = 0; m < M; m++) {                                                    \
                /* in row order: arguments could be evaluated backwards, which \
                 * defeats the hardware prefetcher (4x slower, measured) */     \
                __m512 a0 = DOT(n, s + m), a1 = DOT(n + 1, s + m);                               \
                __m512 a2 = DOT(n + 2, s + m), a3 = DOT(n + 3, s + m);                           \
                _mm_storeu_ps(y + m * N + n, reduce4(a0, a1, a2, a3));                           \
            }                                                                                    \
        for (; n < n1; n++)                                                                      \
            for (int64_t m = 0; m < M; m++) y[m * N + n] = _mm512_reduce_add_ps(DOT(n, s + m));  \
    }
#define DOT_MLX4(n, sm) acc_mlx4_512(w, n, sm, pf)
#define DOT_MLX8(n, sm) acc_mlx8_512(w, n, sm, pf)
#define DOT_MLX4B(n, sm) acc_mlx4i8_512(w, n, sm, pf)
#define DOT_MLX8B(n, sm) acc_mlx8i8_512(w, n, sm, pf)
/* q4_0 / q4_1 rows up to PF_LONG_ROW: each prefetches the row PF_BYTES
 * ahead first (measured as for MLX above); longer ones prefetch in the loop. */
TARGET_512 ALWAYS_INLINE static inline const uint8_t *ggml_row_pf(const mlxn_qmat *w, int64_t n,
                                                                  size_t pf, int64_t ahead) {
    if (!pf && n + ahead < w->N) {
        const uint8_t *p = ggml_row(w, n + ahead);
        for (size_t o = 0; o < w->row_bytes + 63; o += 64) _mm_prefetch((const char *)(p + o), _MM_HINT_T0);
    }
    return ggml_row(w, n);
}
#define DOT_Q40(n, sm) acc_q4_0_512(ggml_row_pf(w, n, pf, ahead), sm, w->K, pf)
#define DOT_Q41(n, sm) acc_q4_1_512(ggml_row_pf(w, n, pf, ahead), sm, w->K, pf)
/* MLX 4/8-bit rows four at a time through acc_mlx48_x4 (whole spans, pf > 0),
 * the rest one at a time. */
#define DEC_ROWS4(name, ACC4, DOT)                                                                \
    TARGET_512 static void name(const mlxn_qmat *w, const dec_scratch *s, float *y, int64_t M,   \
                                int64_t n0, int64_t n1, size_t pf) {                             \
        const int64_t N = w->N;                                                                  \
        int64_t n = n0;                                                                          \
        for (; n + 4 <= n1; n += 4)                                                              \
            for (int64_t m = 0; m < M; m++) {                                                    \
                __m512 a[4];                                                                     \
                ACC4(w, n, s + m, pf, a);                                                        \
                _mm_storeu_ps(y + m * N + n, reduce4(a[0], a[1], a[2], a[3]));                   \
            }                                                                                    \
        for (; n < n1; n++)                                                                      \
            for (int64_t m = 0; m < M; m++) y[m * N + n] = _mm512_reduce_add_ps(DOT(n, s + m));  \
    }
DEC_ROWS4(rows4_mlx4, acc4_mlx4, DOT_MLX4)
DEC_ROWS4(rows4_mlx8, acc4_mlx8, DOT_MLX8)
#undef DEC_ROWS4
DEC_ROWS(rows_mlx4_512, DOT_MLX4)
DEC_ROWS(rows_mlx8_512, DOT_MLX8)
DEC_ROWS(rows_mlx4i8_512, DOT_MLX4B)
DEC_ROWS(rows_mlx8i8_512, DOT_MLX8B)
#define DOT_MLXB(n, sm) acc_mlxb_512(w, n, sm, pf)
#define DOT_MLXBB(n, sm) acc_mlxbi8_512(w, n, sm, pf)
DEC_ROWS(rows_mlxb_512, DOT_MLXB)
DEC_ROWS(rows_mlxbi8_512, DOT_MLXBB)
DEC_ROWS(rows_q4_0_512, DOT_Q40)
DEC_ROWS(rows_q4_1_512, DOT_Q41)
/* the same rows with the dot inlined, for K <= SHORT_K */
#define DOT_Q40I(n, sm) acc_q4x4_512(ggml_row_pf(w, n, pf, ahead), false, sm, w->K, pf)
#define DOT_Q41I(n, sm) acc_q4x4_512(ggml_row_pf(w, n, pf, ahead), true, sm, w->K, pf)
#define DOT_MLX4I(n, sm) acc_mlx48_512(w, n, sm, 4, true, pf)
#define DOT_MLX4IB(n, sm) acc_mlx48_512(w, n, sm, 4, false, pf)
DEC_ROWS(rows_q4_0_short, DOT_Q40I)
DEC_ROWS(rows_q4_1_short, DOT_Q41I)
DEC_ROWS(rows_mlx4_short, DOT_MLX4I)
DEC_ROWS(rows_mlx4i8_short, DOT_MLX4IB)

/* Rows of K up to SHORT_K take row loops with the dot inlined (the same
 * acc_* bodies): the call costs a K = 576 row ~2-6 % (dev EPYC, 1 thread,
 * 3072 x 576: mlx-q4-g32 21.0 -> 22.3 GB/s, q4_0 27.7 -> 28.7, q4_1 29.2 ->
 * 29.6); no change at K = 1024; inlined was slower at K >= 1536 (above). */
#ifndef SHORT_K
#define SHORT_K 1024
#endif
/* One-row decode, K <= STREAM_K, for q4_0 / q4_1 and MLX 4-/8-bit (f16 or
 * bf16 scales; any group: a step's 4 blocks take 4, 2 or 1 scale and bias
 * for groups of 32, 64, 128, as a row holds whole groups, so block b of
 * the stream is in group b >> gsh of it): the rows [a, b) are one
 * contiguous stream of blocks
 * (MLX: three streams, codes, scales and biases, each contiguous across
 * rows), consumed in 4-block steps straight across row ends (no 1-3 block
 * tail per row, no per-row setup). x is laid out for that stream: P = 4 /
 * gcd(K/32 mod 4, 4) copies of x's blocks in a row (P rows are a whole
 * number of steps), so stream block b meets x block b mod K/32. A step that
 * straddles a row end splits by lane mask: its low blocks finish the row,
 * the rest start the next. Rows are taken from an a with a·K/32 on a step
 * boundary, P at a time; the caller runs the rest through the
 * row-at-a-time loop. All four formats are Σ_blocks d·dx·(Σ q·c) + Σ m·Σx
 * (q4_0: m = -8·d·dx, Σ c for Σx); only the step's loads differ. */
/* up to K = 2048 (the stream also beat the called per-row dot at K = 1536:
 * dev EPYC, 576 x 1536, 1 thread 16.7-16.9 -> 15.3 us, 2 threads at ~70
 * GB/s 10.6 -> 10.0 us); x's period copies live on the stack, 4·SHORT_K */
#ifndef STREAM_K
#define STREAM_K 2048
#endif
enum { SF_Q40, SF_Q41, SF_MLX4, SF_MLX8, SF_Q80 };
typedef struct stream_x {
    int P;          /* rows per period */
    int8_t *xq;     /* P·K codes, 128 per 4-block step, in the format's x layout */
    int8_t *xq2;    /* MLX in two parts: the residual's codes, likewise */
    float *dx, *xs; /* per stream block: dx and Σx (Σ codes for q4_0) */
    int32_t *xc;    /* q8_0: per block 8 lanes of -16·Σ codes (see stream_step) */
} stream_x;
/* the weight streams' positions: GGML blocks in q; MLX codes q, scales s,
 * biases b */
typedef struct stream_w {
    const uint8_t *q, *s, *b;
} stream_w;
static bool stream_fits(int64_t K) { /* a step then touches at most 2 rows */
    return K >= 96 && K <= STREAM_K && K * (K % 64 ? 4 : K % 128 ? 2 : 1) <= 4 * SHORT_K;
}
TARGET_512 static void stream_prep(const dec_scratch *s, int64_t K, int fmt, bool two, stream_x *o) {
    const int nb = (int)(K / 32), P = nb % 4 == 0 ? 1 : nb % 2 == 0 ? 2 : 4;
    const float *xsum = fmt == SF_Q40 ? s->xs32 : s->xg;
    o->P = P;
    for (int b = 0; b < P * nb; b++) {
        const int j = b % nb;
        if (fmt == SF_MLX8 || fmt == SF_Q80) { /* natural layout */
            memcpy(o->xq + 32 * b, s->xq + 32 * j, 32);
            if (two) memcpy(o->xq2 + 32 * b, s->xq2 + 32 * j, 32);
        } else { /* XL_Q40 / XL_MLX4: a block's two 16-byte halves 64 apart */
            const size_t so = (size_t)(128 * (j / 4) + 16 * (j % 4)), dof = (size_t)(128 * (b / 4) + 16 * (b % 4));
            memcpy(o->xq + dof, s->xq + so, 16);
            memcpy(o->xq + dof + 64, s->xq + so + 64, 16);
            if (two) {
                memcpy(o->xq2 + dof, s->xq2 + so, 16);
                memcpy(o->xq2 + dof + 64, s->xq2 + so + 64, 16);
            }
        }
        o->dx[b] = s->dx[j];
        o->xs[b] = xsum[j];
        if (fmt == SF_Q80)
            for (int l = 0; l < 8; l++) o->xc[8 * b + l] = -16 * (int32_t)s->xs32[j];
    }
}
/* One 4-block step at c (then advanced): acc += the blocks' products (lanes
 * as il), cor += their offsets m·Σx (q4_0: d·dx·Σc) per block.
 * q8_0 (136 bytes a step): signed codes w go in as the u8 w + 128 (w ^
 * 0x80), so Σ (w+128)·c over a block overshoots by 128·Σc; its 8 int32
 * lanes start from xc = -16·Σc each, which takes that off exactly before
 * the conversion to f32 (no cor term, no sign juggling of x). */
TARGET_512 ALWAYS_INLINE static inline void stream_step(int fmt, bool bf, bool two, int gsh, stream_w *c,
                                                        const int8_t *xq, const int8_t *xq2, const float *dx,
                                                        const float *xs, const int32_t *xc,
                                                        __m512i il, __m512 *acc, __m128 *cor) {
    __m512i d, v;
    __m256 dm;
    if (fmt == SF_Q40 || fmt == SF_Q41) {
        const bool q41 = fmt == SF_Q41;
        const size_t bs = q41 ? sizeof(mlxn_block_q4_1) : sizeof(mlxn_block_q4_0);
        PF_AHEAD_L1(c->q, PF_BYTES);
        PF_AHEAD_L1(c->q + 64, PF_BYTES);
        q4x4_load(c->q, q41, _mm512_loadu_si512(k_q4x4_idx[q41][0]), _mm512_loadu_si512(k_q4x4_idx[q41][1]), &v, &dm);
        c->q += 4 * bs;
    } else if (fmt == SF_Q80) {
        const uint8_t *q = c->q;
        PF_AHEAD_L1(q, PF_BYTES); /* one per 68 bytes, as dot_q8_0_512 */
        PF_AHEAD_L1(q + 68, PF_BYTES);
        __m128 d4;
        d = q8x4_dot(q, xq, _mm512_loadu_si512((const void *)xc), _mm512_loadu_si512((const void *)(xc + 16)),
                     &d4);
        dm = _mm256_castps128_ps256(d4);
        c->q += 4 * sizeof(mlxn_block_q8_0);
    } else {
        /* 4 scales | 4 biases, one each per block: g32 loads 4 of each, g64
         * 2 (each for two blocks), g128 1 */
        __m128i hs, hb;
        if (gsh == 0) {
            hs = _mm_loadl_epi64((const __m128i *)c->s);
            hb = _mm_loadl_epi64((const __m128i *)c->b);
        } else if (gsh == 1) {
            uint32_t a, e;
            memcpy(&a, c->s, 4);
            memcpy(&e, c->b, 4);
            hs = _mm_cvtsi32_si128((int)a);
            hb = _mm_cvtsi32_si128((int)e);
            hs = _mm_unpacklo_epi16(hs, hs);
            hb = _mm_unpacklo_epi16(hb, hb);
        } else {
            uint16_t a, e;
            memcpy(&a, c->s, 2);
            memcpy(&e, c->b, 2);
            hs = _mm_set1_epi16((short)a);
            hb = _mm_set1_epi16((short)e);
        }
        __m128i h = _mm_unpacklo_epi64(hs, hb);
        dm = bf ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16))
                : _mm256_cvtph_ps(h);
        const size_t qb = fmt == SF_MLX4 ? 64 : 128; /* code bytes per step */
        PF_AHEAD_L1(c->q, PF_BYTES);
        if (fmt == SF_MLX8) PF_AHEAD_L1(c->q + 64, PF_BYTES);
        PF_AHEAD_L1(c->s, (PF_BYTES * 8 / qb) >> gsh); /* as far ahead in steps */
        PF_AHEAD_L1(c->b, (PF_BYTES * 8 / qb) >> gsh);
        v = _mm512_loadu_si512((const void *)c->q);
        if (fmt == SF_MLX8) {
            __m512i d0 = byte_dot2(v, xq, xq2, two);
            __m512i d1 = byte_dot2(_mm512_loadu_si512((const void *)(c->q + 64)), xq + 64, xq2 + 64, two);
            __m512 a0 = _mm512_castsi512_ps(d0), a1 = _mm512_castsi512_ps(d1);
            d = _mm512_add_epi32(_mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0x88)),
                                 _mm512_castps_si512(_mm512_shuffle_ps(a0, a1, 0xDD)));
        }
        c->q += qb, c->s += 8 >> gsh, c->b += 8 >> gsh;
    }
    if (fmt == SF_MLX4 && two) d = nib_dot2(v, xq, xq2);
    else if (fmt != SF_MLX8 && fmt != SF_Q80) d = nib_dot(v, xq);
    __m128 f4 = _mm_mul_ps(_mm256_castps256_ps128(dm), _mm_loadu_ps(dx));
    *acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), _mm512_permutexvar_ps(il, _mm512_castps128_ps512(f4)),
                           *acc);
    if (fmt != SF_Q80)
        *cor = _mm_fmadd_ps(fmt == SF_Q40 ? f4 : _mm256_extractf128_ps(dm, 1), _mm_loadu_ps(xs), *cor);
    else
        (void)xs, (void)cor;
}
TARGET_512 ALWAYS_INLINE static inline void rows_stream_g(const mlxn_qmat *w, const stream_x *xs, int fmt, bool bf,
                                                          bool two, int gsh, float *y, int64_t a, int64_t b) {
    const __m512i il = _mm512_loadu_si512(k_stream_il[fmt == SF_MLX8 || fmt == SF_Q80]);
    const int nb = (int)(w->K / 32), P = xs->P;
    const __m128 csign = _mm_set1_ps(fmt == SF_Q40 ? -8.0f : 1.0f);
    stream_w c;
    if (fmt == SF_Q40 || fmt == SF_Q41 || fmt == SF_Q80) {
        c.q = ggml_row(w, a), c.s = c.b = NULL;
    } else { /* 2-byte scales, K / group = nb >> gsh a row */
        c.q = (const uint8_t *)w->w + (size_t)a * (size_t)(w->K / 8 * w->bits);
        c.s = (const uint8_t *)w->scales + (size_t)(a * (nb >> gsh)) * 2;
        c.b = (const uint8_t *)w->biases + (size_t)(a * (nb >> gsh)) * 2;
    }
    __m512 carry = _mm512_setzero_ps(), out[4];
    __m128 ccarry = _mm_setzero_ps();
    int no = 0, lb0 = 0; /* the row's first block within the period: (r - a) % P · nb */
    for (int64_t r = a; r < b; r++, lb0 = lb0 + nb == P * nb ? 0 : lb0 + nb) {
        const int lb1 = lb0 + nb; /* (a counter: a division a row cost q4_1 / MLX 4-bit g32
                                     * at K = 576 ~7 %, dev EPYC, L3-resident) */
        __m512 acc = carry;
        __m128 cor = ccarry;
        int st = (lb0 + 3) / 4;
        for (; st < lb1 / 4; st++)
            stream_step(fmt, bf, two, gsh, &c, xs->xq + 128 * st, xs->xq2 + 128 * st, xs->dx + 4 * st, xs->xs + 4 * st,
                        fmt == SF_Q80 ? xs->xc + 32 * st : NULL, il, &acc,
                        &cor);
        carry = _mm512_setzero_ps();
        ccarry = _mm_setzero_ps();
        if (lb1 % 4) { /* the step across the row end: low lb1 % 4 blocks here */
            __m512 t = _mm512_setzero_ps();
            __m128 cc = _mm_setzero_ps();
            stream_step(fmt, bf, two, gsh, &c, xs->xq + 128 * st, xs->xq2 + 128 * st, xs->dx + 4 * st, xs->xs + 4 * st,
                        fmt == SF_Q80 ? xs->xc + 32 * st : NULL, il, &t,
                        &cc); /* the next row goes on after this step */
            const int q = lb1 % 4;
            const __mmask16 k16 = _mm512_cmplt_epi32_mask(il, _mm512_set1_epi32(q));
            const __mmask8 k4 = (__mmask8)((1u << q) - 1);
            acc = _mm512_mask_add_ps(acc, k16, acc, t);
            cor = _mm_mask_add_ps(cor, k4, cor, cc);
            carry = _mm512_maskz_mov_ps((__mmask16)~k16, t);
            ccarry = _mm_maskz_mov_ps((__mmask8)(~k4 & 0xF), cc);
        }
        out[no++] = _mm512_add_ps(acc, _mm512_zextps128_ps512(_mm_mul_ps(cor, csign)));
        if (no == 4) {
            _mm_storeu_ps(y + r - 3, reduce4(out[0], out[1], out[2], out[3]));
            no = 0;
        }
    }
    for (int i = 0; i < no; i++) y[b - no + i] = _mm512_reduce_add_ps(out[i]);
}
/* MLX groups of 32 << gsh, gsh a constant in each copy (a run-time gsh
 * cost g32 ~3 % at 8192 x 576, L3-resident) */
TARGET_512 ALWAYS_INLINE static inline void rows_stream(const mlxn_qmat *w, const stream_x *xs, int fmt, bool bf,
                                                        bool two, float *y, int64_t a, int64_t b) {
    if (fmt == SF_MLX4 || fmt == SF_MLX8) {
        if (w->group == 64) return rows_stream_g(w, xs, fmt, bf, two, 1, y, a, b);
        if (w->group == 128) return rows_stream_g(w, xs, fmt, bf, two, 2, y, a, b);
    }
    rows_stream_g(w, xs, fmt, bf, two, 0, y, a, b);
}
typedef void (*stream_fn)(const mlxn_qmat *, const stream_x *, float *, int64_t, int64_t);
typedef float (*ggml_dot_fn)(const void *, const dec_scratch *, int64_t, size_t);
#define STREAM_ROWS(name, fmt, bf, two)                                                          \
    TARGET_512 static void name(const mlxn_qmat *w, const stream_x *xs, float *y, int64_t a,    \
                                int64_t b) {                                                     \
        rows_stream(w, xs, fmt, bf, two, y, a, b);                                               \
    }
STREAM_ROWS(stream_q4_0, SF_Q40, false, false)
STREAM_ROWS(stream_q4_1, SF_Q41, false, false)
STREAM_ROWS(stream_mlx4_f16, SF_MLX4, false, true)
STREAM_ROWS(stream_mlx4_bf16, SF_MLX4, true, true)
STREAM_ROWS(stream_mlx8_f16, SF_MLX8, false, true)
STREAM_ROWS(stream_mlx8_bf16, SF_MLX8, true, true)
STREAM_ROWS(stream_mlx4i8_f16, SF_MLX4, false, false)
STREAM_ROWS(stream_mlx4i8_bf16, SF_MLX4, true, false)
STREAM_ROWS(stream_mlx8i8_f16, SF_MLX8, false, false)
STREAM_ROWS(stream_mlx8i8_bf16, SF_MLX8, true, false)
STREAM_ROWS(stream_q8_0, SF_Q80, false, false)
#undef STREAM_ROWS
#undef DOT_MLX4
#undef DOT_MLX8
#undef DOT_Q40
#undef DOT_Q41
#undef DEC_ROWS

enum { VK_NONE, VK_MLX_ANY, VK_MLX4, VK_MLX8, VK_MLXB, VK_GGML, VK_Q4_0, VK_Q4_1 };
/* An MLX kernel on int8 x (its groups' Σx from the rounded x) */
static bool vk_mlx_int8(int kind) { return kind == VK_MLX4 || kind == VK_MLX8 || kind == VK_MLXB; }
/* ... that takes x in two parts (quantize_x_512) */
static bool vk_two_parts(int kind, const mlxn_qmat *w) { return vk_mlx_int8(kind) && !w->int8_act; }

/* AVX-512 VBMI (MLX 2/3/5/6-bit on int8 x) */
static bool cpu_vbmi(void) {
    static int v = -1;
    int c = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (c < 0) {
        __builtin_cpu_init();
        c = __builtin_cpu_supports("avx512vbmi") ? 1 : 0;
        __atomic_store_n(&v, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* MLX 2/3/5/6-bit decode on AVX-512: VBMI where the CPU has it, else the
 * AVX2 int16 kernels (decode_avx2.c). MLXN_MLXB (a measuring switch)
 * forces "avx2" or "f32" (the AVX-512 f32 dot, which CPUs without VBMI
 * took before). One-row 4096 x 14336, Intel Xeon of the H200 machine, 1 /
 * 4 threads, µs: mlx-q3-g64 VBMI 2388 / 1124, AVX2 3855 / 1840, f32 8368 /
 * 4470; mlx-q6-g64 3737 / 1908, 4398 / 1988, 9753 / 4675; mlx-q2-g32
 * 2220 / 1160, 4087 / 1959, 12120 / 4595 (bench/RESULTS.md). */
static int mlxb_route(void) {
    static int v = -1;
    int c = __atomic_load_n(&v, __ATOMIC_RELAXED);
    if (c < 0) {
        const char *e = getenv("MLXN_MLXB");
        c = e && !strcmp(e, "avx2") ? 1 : e && !strcmp(e, "f32") ? 2 : 0;
        __atomic_store_n(&v, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* Which AVX-512 decode kernel (and x layout) serves this weight (VK_NONE:
 * none; MLX 2/3/5/6-bit may then take the AVX2 kernels, avx2_parts). */
static int vnni_kind(const mlxn_qmat *w, ggml_dot_fn *fn, int *layout) {
    *fn = NULL;
    *layout = XL_NATURAL;
    if (w->kind == MLXN_QKIND_MLX) {
        if (w->bits == 4) return *layout = XL_MLX4, VK_MLX4;
        if (w->bits == 8) return VK_MLX8;
        const int r = mlxb_route();
        return r == 1 ? VK_NONE : r == 2 ? VK_MLX_ANY : cpu_vbmi() ? VK_MLXB : VK_NONE;
    }
    switch (w->wtype) {
    case MLXN_Q4_0: *layout = XL_Q40; return VK_Q4_0;
    case MLXN_Q4_1: *layout = XL_Q40; return VK_Q4_1;
    case MLXN_Q8_0: *fn = dot_q8_0_512; break;
    case MLXN_Q4_K: *fn = dot_q4_k_512; *layout = XL_Q4K; break;
    case MLXN_Q5_K: *fn = dot_q5_k_512; *layout = XL_Q4K; break;
    case MLXN_Q6_K: *fn = dot_q6_k_512; break;
    default: return VK_NONE;
    }
    return VK_GGML;
}

/* Rows [n0, n1) one at a time, with whole rows prefetched ahead where the
 * dot does not prefetch in its loop (q8_0, k-quants, MLX 2/3/5/6-bit). */
TARGET_512 static void rows_one(const mlxn_qmat *w, int kind, ggml_dot_fn fn, const float *x,
                                const dec_scratch *s, float *y, int64_t M, int64_t n0, int64_t n1,
                                const pf_rows *pr, size_t pf) {
    const int64_t K = w->K, N = w->N;
    /* MLX 2/3/5/6-bit has no in-loop prefetch: rows ahead at any length */
    const bool rows_ahead = !pf || kind == VK_MLX_ANY;
    if (rows_ahead) pf_rows_at(pr, n0 - pr->ahead, pr->ahead);
    for (int64_t n = n0; n < n1; n++) {
        if (rows_ahead) pf_rows_at(pr, n, 1);
        for (int64_t m = 0; m < M; m++)
            y[m * N + n] = kind == VK_MLX_ANY ? dot_mlx_any_512(w, n, x + m * K, &s[m])
                                              : fn(ggml_row(w, n), &s[m], K, pf);
    }
}

/* M (< MDEC) x rows: prepare each (int8 codes, sums) in its own scratch
 * slice, then for each weight row dot it with every x row while it is in L1. */
TARGET_512 static void decode_vnni(const mlxn_qmat *w, int kind, ggml_dot_fn fn, int layout,
                                   const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
                                   void *scratch) {
    const int64_t K = w->K;
    const bool two = vk_two_parts(kind, w);
    dec_scratch s[MDEC];
    for (int64_t m = 0; m < M; m++) {
        s[m] = dec_layout(scratch, K, m);
        const float *xm = x + m * K;
        if (kind == VK_MLX_ANY) {
            for (int64_t g = 0; g < K / w->group; g++) {
                __m512 a = _mm512_setzero_ps();
                for (int64_t k = g * w->group; k < (g + 1) * w->group; k += 16)
                    a = _mm512_add_ps(a, _mm512_loadu_ps(xm + k));
                s[m].xgg[g] = _mm512_reduce_add_ps(a);
            }
            continue;
        }
        quantize_x_512(xm, K, &s[m], layout, two);
        if (vk_mlx_int8(kind)) { /* Σx per group */
            int per = w->group / 32;
            for (int64_t g = 0; g < K / w->group; g++) {
                float t = 0;
                for (int i = 0; i < per; i++) t += s[m].xg[g * per + i];
                s[m].xgg[g] = t;
            }
            for (int j = 0; j < 16; j++) s[m].xgg[K / w->group + j] = 0; /* span loads */
        }
    }
    const pf_rows pr = pf_init(w);
    const size_t pf = pr.rb[0] + pr.rb[1] + pr.rb[2] > PF_LONG_ROW ? PF_STREAM : 0;
    void (*rows)(const mlxn_qmat *, const dec_scratch *, float *, int64_t, int64_t, int64_t,
                 size_t) = NULL;
    stream_fn sf = NULL;
    int sfmt = SF_Q40;
    const bool sb16 = w->sb_type == MLXN_F16 || w->sb_type == MLXN_BF16, bf = w->sb_type == MLXN_BF16;
    switch (kind) {
    case VK_MLX4:
        rows = K <= SHORT_K ? (two ? rows_mlx4_short : rows_mlx4i8_short) : two ? rows_mlx4_512 : rows_mlx4i8_512;
        sfmt = SF_MLX4;
        /* the stream only where a row ends in a short span: with whole
         * spans (unrolled) the row dot is faster (dev EPYC, L3-resident, 2
         * threads, µs: 3072 x 1024 36.8 -> 31.2, 2048 x 1536 34.0 -> 30.5,
         * 1536 x 2048 32.2 -> 28.8; at K = 576 the stream stays ahead, 62.1
         * against 82.9 for 8192 x 576). Groups of 64 / 128 too (mlx-lm's
         * default group is 64; Zen 4, same protocol, row dot / stream:
         * mlx-q4-g64 8192 x 576 99-101 / 65.5-66.0, 4096 x 640 50 / 37,
         * mlx-q4-g128 4096 x 640 49-50 / 35-43). */
        if (sb16 && (K / 32) % 16)
            sf = two ? (bf ? stream_mlx4_bf16 : stream_mlx4_f16) : bf ? stream_mlx4i8_bf16 : stream_mlx4i8_f16;
        break;
    case VK_MLXB: rows = two ? rows_mlxb_512 : rows_mlxbi8_512; break;
    case VK_MLX8:
        rows = two ? rows_mlx8_512 : rows_mlx8i8_512;
        sfmt = SF_MLX8;
        /* g64 / g128 only where a row ends in a short span (dev EPYC Zen 4,
         * L3-resident, 2 threads, µs, rows / stream: mlx-q8-g64 8192 x 576
         * 106 / 77, 4096 x 640 56 / 46; whole spans were within the noise
         * or slower: 1536 x 2048 40.6 / 43.3) */
        if (sb16 && (w->group == 32 || (K / 32) % 16))
            sf = two ? (bf ? stream_mlx8_bf16 : stream_mlx8_f16) : bf ? stream_mlx8i8_bf16 : stream_mlx8i8_f16;
        break;
    case VK_Q4_0:
        rows = K > SHORT_K ? rows_q4_0_512 : rows_q4_0_short;
        sf = stream_q4_0;
        break;
    case VK_Q4_1:
        rows = K > SHORT_K ? rows_q4_1_512 : rows_q4_1_short;
        sfmt = SF_Q41;
        sf = stream_q4_1;
        break;
    case VK_GGML:
        if (w->wtype == MLXN_Q8_0) sfmt = SF_Q80, sf = stream_q8_0;
        break;
    default: break;
    }
    /* MLX 4/8-bit rows past X4_K with x in two parts: four rows at a time
     * (acc_mlx48_x4) */
    if ((kind == VK_MLX4 || kind == VK_MLX8) && two && pf && K > X4_K && (K / 32) % 16 == 0)
        rows = kind == VK_MLX4 ? rows4_mlx4 : rows4_mlx8;
    if (M == 1 && sf && stream_fits(K)) {
        _Alignas(64) int8_t sxq[4 * SHORT_K], sxq2[4 * SHORT_K];
        _Alignas(64) int32_t sxc[4 * SHORT_K / 4];
        float sdx[4 * SHORT_K / 32], sxs[4 * SHORT_K / 32];
        stream_x xs = {0, sxq, sxq2, sdx, sxs, sxc};
        stream_prep(&s[0], K, sfmt, two, &xs);
        int64_t a = (n0 + xs.P - 1) / xs.P * xs.P, b = a + (n1 - a) / xs.P * xs.P;
        if (a < b) {
            if (rows)
                rows(w, s, y, M, n0, a, pf);
            else
                rows_one(w, kind, fn, x, s, y, M, n0, a, &pr, pf);
            sf(w, &xs, y, a, b);
            n0 = b;
        }
    }
    if (rows)
        rows(w, s, y, M, n0, n1, pf);
    else
        rows_one(w, kind, fn, x, s, y, M, n0, n1, &pr, pf);
}
#endif /* MLXN_X86 */

/* Rows up to which the decode (row-at-a-time) kernels run; beyond, the
 * packed-panel GEMM. AVX-512 VNNI kernels stay ahead of the f32 GEMM (which
 * must dequantize every weight) up to about 16 rows; f32 decode only for
 * M < 4. */
static int64_t decode_rows(const mlxn_qmat *w, int isa) {
#ifdef MLXN_X86
    ggml_dot_fn fn;
    int layout;
    if (isa == ISA_512 && !w->f32_act && vnni_kind(w, &fn, &layout) != VK_NONE) return MDEC;
#endif
    (void)w;
    (void)isa;
    return MLXN_AVX2_DECODE_ROWS;
}

/* The AVX2 int8 decode kernels' x parts for w on this ISA (0: not taken). */
static int avx2_parts(const mlxn_qmat *w, int isa) {
#ifdef MLXN_X86
    /* ISA_AVX2 means AVX2 + FMA; every such CPU has F16C too (Intel since
     * Haswell, AMD since Piledriver), and clang's __builtin_cpu_supports
     * does not know "f16c" */
    if (isa == ISA_AVX2) return mlxn_dec_avx2_parts(w);
    ggml_dot_fn fn;
    int layout;
    if (isa == ISA_512 && w->kind == MLXN_QKIND_MLX && !w->f32_act && vnni_kind(w, &fn, &layout) == VK_NONE)
        return mlxn_dec_avx2_parts(w); /* MLX 2/3/5/6-bit routed to the AVX2 kernels */
#endif
    (void)w;
    (void)isa;
    return 0;
}

int mlxn_mm_x_parts(const mlxn_qmat *w, int64_t M) {
#ifdef MLXN_X86
    int isa = isa_now();
    if (isa == ISA_AVX2) return M < decode_rows(w, isa) ? avx2_parts(w, isa) : 0;
    ggml_dot_fn fn;
    int layout;
    int k = isa == ISA_512 && !w->f32_act ? vnni_kind(w, &fn, &layout) : VK_NONE;
    if (M >= decode_rows(w, isa)) return 0;
    if (k == VK_NONE) return avx2_parts(w, isa);
    if (k == VK_MLX_ANY) return 0;
    return vk_two_parts(k, w) ? 2 : 1;
#else
    (void)w;
    (void)M;
    return 0;
#endif
}

bool mlxn_mm_quantizes_x(const mlxn_qmat *w, int64_t M) { return mlxn_mm_x_parts(w, M) > 0; }

size_t mlxn_mm_scratch_bytes(const mlxn_qmat *w, int64_t M) {
    const int isa = isa_now();
    int64_t md = decode_rows(w, isa);
    size_t a = dec_bytes(w->K, M < md ? (M > 0 ? M : 1) : 1), b = gemm_bytes(w, M);
    size_t c = M < md && avx2_parts(w, isa) ? mlxn_dec_avx2_scratch(w->K, M) : 0;
    a = a > c ? a : c;
    return a > b ? a : b;
}

/* ------------------------------------------------------------------------ */
/* GEMM (M beyond the decode rows): packed panel + micro-kernel              */
/* ------------------------------------------------------------------------ */

/* Fill panel[k][NR] with W[n0+c, k0+k] for c < nc (zeros for c >= nc). */
static void pack_panel(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0, int kc,
                       float *panel, float *tmp) {
    for (int c = 0; c < NR; c++) {
        if (c < nc) {
            mlxn_qmat_dequant_row(w, nbase + c, k0, k0 + kc, tmp);
            for (int k = 0; k < kc; k++) panel[k * NR + c] = tmp[k];
        } else {
            for (int k = 0; k < kc; k++) panel[k * NR + c] = 0;
        }
    }
}

/* y[m][c] (+)= Σ_k xr[m][k]·panel[k][c], m < mr, c < nc. */
static void ukernel_scalar(const float *const *xr, int mr, const float *panel, int kc, float *y,
                           int64_t ldy, int nc, bool add) {
    float acc[MR][NR];
    memset(acc, 0, sizeof acc);
    for (int k = 0; k < kc; k++)
        for (int m = 0; m < MR; m++) {
            float xv = xr[m][k];
            for (int c = 0; c < NR; c++) acc[m][c] += xv * panel[k * NR + c];
        }
    for (int m = 0; m < mr; m++)
        for (int c = 0; c < nc; c++) y[m * ldy + c] = (add ? y[m * ldy + c] : 0) + acc[m][c];
}

#ifdef MLXN_X86
TARGET_512 static void ukernel_512(const float *const *xr, int mr, const float *panel, int kc,
                                   float *y, int64_t ldy, int nc, bool add) {
    __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    const float *x0 = xr[0], *x1 = xr[1], *x2 = xr[2], *x3 = xr[3], *x4 = xr[4], *x5 = xr[5];
    for (int k = 0; k < kc; k++) {
        __m512 b0 = _mm512_loadu_ps(panel + k * NR), b1 = _mm512_loadu_ps(panel + k * NR + 16);
        __m512 a;
        a = _mm512_set1_ps(x0[k]);
        c00 = _mm512_fmadd_ps(a, b0, c00);
        c01 = _mm512_fmadd_ps(a, b1, c01);
        a = _mm512_set1_ps(x1[k]);
        c10 = _mm512_fmadd_ps(a, b0, c10);
        c11 = _mm512_fmadd_ps(a, b1, c11);
        a = _mm512_set1_ps(x2[k]);
        c20 = _mm512_fmadd_ps(a, b0, c20);
        c21 = _mm512_fmadd_ps(a, b1, c21);
        a = _mm512_set1_ps(x3[k]);
        c30 = _mm512_fmadd_ps(a, b0, c30);
        c31 = _mm512_fmadd_ps(a, b1, c31);
        a = _mm512_set1_ps(x4[k]);
        c40 = _mm512_fmadd_ps(a, b0, c40);
        c41 = _mm512_fmadd_ps(a, b1, c41);
        a = _mm512_set1_ps(x5[k]);
        c50 = _mm512_fmadd_ps(a, b0, c50);
        c51 = _mm512_fmadd_ps(a, b1, c51);
    }
    __m512 acc[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    __mmask16 k0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);
    __mmask16 k1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
    for (int m = 0; m < mr; m++) {
        float *yr = y + m * ldy;
        __m512 v0 = acc[m][0], v1 = acc[m][1];
        if (add) {
            v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, yr));
            v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, yr + 16));
        }
        _mm512_mask_storeu_ps(yr, k0, v0);
        _mm512_mask_storeu_ps(yr + 16, k1, v1);
    }
}

/* Where each of the NR columns of a panel reads its k0..k0+kc values: f32
 * rows straight from W, others dequantized into rows[c·rstride]; NULL for
 * c >= nc. */
static void panel_sources(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0, int kc,
                          float *rows, int rstride, const float *src[NR]) {
    for (int c = 0; c < NR; c++) {
        if (c >= nc) {
            src[c] = NULL;
        } else if (w->kind == MLXN_QKIND_GGML && w->wtype == MLXN_F32) {
            src[c] = (const float *)(const void *)ggml_row(w, nbase + c) + k0;
        } else {
            mlxn_qmat_dequant_row(w, nbase + c, k0, k0 + kc, rows + c * rstride);
            src[c] = rows + c * rstride;
        }
    }
}

/* AVX2 GEMM pieces (gemm_avx2): x packed per MR rows, xp[k][r] (rows past
 * mc zero), so a micro-kernel's broadcasts walk one stream; the W panel
 * stored as two 16-column halves, half h at panel + h·kc·16, [k][16]. */
/* The in-lane stages of an n×n register transpose, the same for the 8×8
 * AVX2 and 16×16 AVX-512 ones: rows paired by unpacks, then 4×4 blocks of
 * each 128-bit lane by shuffles (the cross-lane stages differ). */
#define TR_INLANE(r, t, n, UNLO, UNHI, SHUF)                                  \
    do {                                                                      \
        for (int i = 0; i < (n) / 2; i++) {                                   \
            t[2 * i] = UNLO(r[2 * i], r[2 * i + 1]);                          \
            t[2 * i + 1] = UNHI(r[2 * i], r[2 * i + 1]);                      \
        }                                                                     \
        for (int i = 0; i < (n) / 4; i++) {                                   \
            r[4 * i] = SHUF(t[4 * i], t[4 * i + 2], 0x44);                    \
            r[4 * i + 1] = SHUF(t[4 * i], t[4 * i + 2], 0xEE);                \
            r[4 * i + 2] = SHUF(t[4 * i + 1], t[4 * i + 3], 0x44);            \
            r[4 * i + 3] = SHUF(t[4 * i + 1], t[4 * i + 3], 0xEE);            \
        }                                                                     \
    } while (0)

/* r[i] = row i of an 8×8 block → r[j] = column j. */
TARGET_AVX2 static void tr8(__m256 r[8]) {
    __m256 t[8];
    TR_INLANE(r, t, 8, _mm256_unpacklo_ps, _mm256_unpackhi_ps, _mm256_shuffle_ps);
    for (int i = 0; i < 4; i++) {
        t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
        t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
    }
    for (int i = 0; i < 8; i++) r[i] = t[i];
}

/* 8 floats of src from k (zeros past kc; src NULL: all zero). */
TARGET_AVX2 static __m256 load8_upto(const float *src, int k, int kc) {
    if (!src) return _mm256_setzero_ps();
    if (k + 8 <= kc) return _mm256_loadu_ps(src + k);
    float t[8] = {0};
    for (int i = 0; k + i < kc; i++) t[i] = src[k + i];
    return _mm256_loadu_ps(t);
}

TARGET_AVX2 static void pack_x_avx2(const float *x, int64_t K, int kc, int64_t mc, float *xp) {
    __m256 v[8];
    for (int64_t b = 0; b * MR < mc; b++) {
        float *xb = xp + b * MR * kc;
        int rows = mc - b * MR < MR ? (int)(mc - b * MR) : MR;
        const float *src[MR];
        for (int r = 0; r < MR; r++) src[r] = r < rows ? x + (b * MR + r) * K : NULL;
        for (int k = 0; k < kc; k += 8) {
            for (int r = 0; r < MR; r++) v[r] = load8_upto(src[r], k, kc);
            v[6] = v[7] = _mm256_setzero_ps();
            tr8(v); /* v[i]: the MR rows at k + i in lanes 0-5 */
            for (int i = 0; i < 8 && k + i < kc; i++) {
                float *d = xb + (k + i) * MR;
                _mm_storeu_ps(d, _mm256_castps256_ps128(v[i]));
                _mm_storel_pi((__m64 *)(void *)(d + 4), _mm256_extractf128_ps(v[i], 1));
            }
        }
    }
}

/* As pack_panel_512: rows dequantized into tmp[NR][KC] first (f32 W read
 * in place), then moved into the two halves by 8×8 transposes. */
TARGET_AVX2 static void pack_panel_avx2(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0,
                                        int kc, float *panel, float *tmp) {
    const float *src[NR];
    panel_sources(w, nbase, nc, k0, kc, tmp, KC, src);
    __m256 v[8];
    for (int cb = 0; cb < NR && cb < nc; cb += 8) {
        float *ph = panel + (cb >> 4) * kc * 16 + (cb & 15);
        for (int k = 0; k < kc; k += 8) {
            for (int i = 0; i < 8; i++) v[i] = load8_upto(src[cb + i], k, kc);
            tr8(v); /* v[i]: columns cb..cb+7 at k + i */
            for (int i = 0; i < 8 && k + i < kc; i++) _mm256_storeu_ps(ph + (k + i) * 16, v[i]);
        }
    }
}

/* y[m][c] (+)= Σ_k xp[k][m]·pb[k][c], m < mr, c < nc ≤ 16: 6×16, 12
 * accumulators. They are named variables: as an array indexed by row in
 * the epilogue, gcc 12 kept them in memory and stored every one on every
 * k step (perf: half the kernel's time; 26% of peak FMA rate). */
TARGET_AVX2 static void ukernel_avx2(const float *xp, int mr, const float *pb, int kc, float *y,
                                     int64_t ldy, int nc, bool add) {
    const float *xk = xp;
    __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00,
           c30 = c00, c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
    for (int k = 0; k < kc; k++, pb += 16, xk += MR) {
        __m256 b0 = _mm256_loadu_ps(pb), b1 = _mm256_loadu_ps(pb + 8), a;
        a = _mm256_broadcast_ss(xk);
        c00 = _mm256_fmadd_ps(a, b0, c00);
        c01 = _mm256_fmadd_ps(a, b1, c01);
        a = _mm256_broadcast_ss(xk + 1);
        c10 = _mm256_fmadd_ps(a, b0, c10);
        c11 = _mm256_fmadd_ps(a, b1, c11);
        a = _mm256_broadcast_ss(xk + 2);
        c20 = _mm256_fmadd_ps(a, b0, c20);
        c21 = _mm256_fmadd_ps(a, b1, c21);
        a = _mm256_broadcast_ss(xk + 3);
        c30 = _mm256_fmadd_ps(a, b0, c30);
        c31 = _mm256_fmadd_ps(a, b1, c31);
        a = _mm256_broadcast_ss(xk + 4);
        c40 = _mm256_fmadd_ps(a, b0, c40);
        c41 = _mm256_fmadd_ps(a, b1, c41);
        a = _mm256_broadcast_ss(xk + 5);
        c50 = _mm256_fmadd_ps(a, b0, c50);
        c51 = _mm256_fmadd_ps(a, b1, c51);
    }
    __m256 c[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
    float tmp[16];
    for (int m = 0; m < mr; m++) {
        float *yr = y + m * ldy;
        if (nc == 16) { /* vector stores */
            __m256 r0 = c[m][0], r1 = c[m][1];
            if (add) r0 = _mm256_add_ps(r0, _mm256_loadu_ps(yr)), r1 = _mm256_add_ps(r1, _mm256_loadu_ps(yr + 8));
            _mm256_storeu_ps(yr, r0);
            _mm256_storeu_ps(yr + 8, r1);
            continue;
        }
        _mm256_storeu_ps(tmp, c[m][0]);
        _mm256_storeu_ps(tmp + 8, c[m][1]);
        for (int q = 0; q < nc; q++) yr[q] = (add ? yr[q] : 0) + tmp[q];
    }
}

/* The AVX2 GEMM: per MCB_AVX2 x rows, NCB columns and KC chunk, x packed
 * once (256 KB, half of a Zen 3 L2), each 32-column W panel dequantized
 * once (32 KB) and every MR-row block run over it. Scratch as
 * gemm_blocked's f32 layout (xp, then panel, then NR dequantized rows). */
#ifndef MCB_AVX2 /* a -D knob for measuring (510 measured slower, RESULTS) */
#define MCB_AVX2 256
#endif
_Static_assert(MCB_AVX2 <= MCB && MR <= MRB, "gemm_avx2's x block must fit gemm_bytes' (sized for MCB rows)");
TARGET_AVX2 static void gemm_avx2(const mlxn_qmat *w, const float *x, float *y, int64_t M,
                                  int64_t n0, int64_t n1, void *scratch) {
    const int64_t K = w->K, N = w->N;
    float *xp = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int64_t mcmax = M < MCB_AVX2 ? M : MCB_AVX2;
    float *panel = xp + al64((size_t)((mcmax + MR - 1) / MR * MR) * KC * 4) / 4;
    float *tmp = panel + KC * NR;
    for (int64_t m0 = 0; m0 < M; m0 += MCB_AVX2) {
        int64_t mc = M - m0 < MCB_AVX2 ? M - m0 : MCB_AVX2;
        for (int64_t c0 = n0; c0 < n1; c0 += NCB) {
            int64_t c1 = n1 - c0 < NCB ? n1 : c0 + NCB;
            for (int64_t k0 = 0; k0 < K; k0 += KC) {
                int kc = (int)(K - k0 < KC ? K - k0 : KC);
                pack_x_avx2(x + m0 * K + k0, K, kc, mc, xp);
                for (int64_t nb = c0; nb < c1; nb += NR) {
                    int nc = (int)(c1 - nb < NR ? c1 - nb : NR);
                    pack_panel_avx2(w, nb, nc, k0, kc, panel, tmp);
                    /* one 16-column half (16 KB) at a time, so it stays in
                     * L1 while x streams from L2 */
                    for (int h = 0; h * 16 < nc; h++)
                        for (int64_t m = 0; m < mc; m += MR) {
                            int mr = (int)(mc - m < MR ? mc - m : MR);
                            ukernel_avx2(xp + m * kc, mr, panel + h * kc * 16, kc,
                                         y + (m0 + m) * N + nb + h * 16, N,
                                         nc - h * 16 < 16 ? nc - h * 16 : 16, k0 > 0);
                        }
                }
            }
        }
    }
}
#endif

#ifdef MLXN_X86
TARGET_512 static void tr16(__m512 r[16]) {
    __m512 t[16];
    TR_INLANE(r, t, 16, _mm512_unpacklo_ps, _mm512_unpackhi_ps, _mm512_shuffle_ps);
    for (int i = 0; i < 4; i++) {
        t[i] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0x88);
        t[i + 4] = _mm512_shuffle_f32x4(r[i], r[i + 4], 0xDD);
        t[i + 8] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0x88);
        t[i + 12] = _mm512_shuffle_f32x4(r[i + 8], r[i + 12], 0xDD);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
        r[i + 4] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0x88);
        r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
        r[i + 12] = _mm512_shuffle_f32x4(t[i + 4], t[i + 12], 0xDD);
    }
}

/* Columns cb..cb+15 of the sources at k = kb..kb+15 → v[i] = k kb + i
 * across the 16 columns (zeros past kc and for absent columns). */
TARGET_512 static void load_tr16(const float *const *src, int cb, int kb, int kc, __m512 v[16]) {
    __mmask16 km = kc - kb >= 16 ? 0xFFFF : (__mmask16)((1u << (kc - kb)) - 1);
    for (int i = 0; i < 16; i++)
        v[i] = src[cb + i] ? _mm512_maskz_loadu_ps(km, src[cb + i] + kb) : _mm512_setzero_ps();
    tr16(v);
}

/* pack_panel with rows dequantized into rows[NR][KC] first (f32 W read in
 * place), then moved into the panel by 16×16 register transposes (k rows
 * >= kc are not stored). */
TARGET_512 static void pack_panel_512(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0, int kc,
                                      float *panel, float *rows) {
    const float *src[NR];
    panel_sources(w, nbase, nc, k0, kc, rows, KCX, src);
    __m512 v[16];
    for (int cb = 0; cb < NR; cb += 16)
        for (int kb = 0; kb < kc; kb += 16) {
            load_tr16(src, cb, kb, kc, v);
            for (int i = 0; i < 16 && kb + i < kc; i++) _mm512_storeu_ps(panel + (kb + i) * NR + cb, v[i]);
        }
}
#endif

/* ---- blocked GEMM (AVX-512): f32 FMAs, or bf16 pairs by VDPBF16PS ----
 * The bf16 variant (2 products per f32 lane per instruction, twice the f32
 * rate) serves prefill with quantized weights when x may be rounded
 * (w->f32_act off) on CPUs with AVX512-BF16, see use_bf16. x and the
 * dequantized W panel are rounded to bf16 (round to nearest even); products
 * of two bf16 are exact in f32 and accumulate in f32. Error per product ≤ (2·2^-8 + 2^-16)·|x_k·w_k| (bf16 keeps 8
 * significant bits: relative rounding error ≤ 2^-8 each), so
 * |y - x·w| ≤ (2^-7 + 2^-16)·Σ|x_k·w_k| + f32 accumulation. A pair holds
 * k = 2j in its low half and 2j+1 in its high half; a k beyond K is zero in
 * both x and W. */

#ifdef MLXN_X86
#define TARGET_BF16                                                                           \
    __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni,avx512dq,avx512bf16,f16c,fma")))

static bool cpu_bf16(void) {
    static int cached = -1; /* relaxed atomics: threads may race to fill it, same value */
    int c = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (c < 0) {
        __builtin_cpu_init();
        c = cpu_isa() == ISA_512 && __builtin_cpu_supports("avx512bf16");
        __atomic_store_n(&cached, c, __ATOMIC_RELAXED);
    }
    return c;
}

/* Ask for k [0, kc) of the next MRB x rows (fewer if `left` is smaller):
 * packing walks 12 rows side by side, which the hardware prefetcher does
 * not follow well. */
static void prefetch_x_rows(const float *x, int64_t K, int kc, int64_t left) {
    for (int64_t r = 0; r < MRB && r < left; r++)
        for (int k = 0; k < kc; k += 16) __builtin_prefetch(x + r * K + k, 0, 2);
}

/* x rows [0, mc) (row stride K), k [0, kc) → xp[b][j][r] = step j of row
 * b·MRB + r: x[k = j] (f32) or the bf16 pair of k = 2j, 2j+1 (bf), for
 * j < steps (kc or ceil(kc/2)); rows ≥ mc up to the next multiple of MRB,
 * and k ≥ kc, are zero. 16 steps of MRB rows at a time through a 16×16
 * register transpose. */
TARGET_BF16 static void pack_x_bf16(const float *x, int64_t K, int kc, int64_t mc, uint32_t *xp) {
    const int np = (kc + 1) / 2;
    const __mmask16 st = (__mmask16)((1u << MRB) - 1);
    __m512 v[16];
    for (int64_t b = 0; b * MRB < mc; b++) {
        uint32_t *xb = xp + b * np * MRB;
        int rows = mc - b * MRB < MRB ? (int)(mc - b * MRB) : MRB;
        prefetch_x_rows(x + (b + 1) * MRB * K, K, kc, mc - (b + 1) * MRB);
        for (int k = 0; k < kc; k += 32) {
            int left = kc - k;
            __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            __mmask16 m1 = left >= 32 ? 0xFFFF : left <= 16 ? 0 : (__mmask16)((1u << (left - 16)) - 1);
            for (int r = 0; r < 16; r++) {
                const float *xm = x + (b * MRB + r) * K + k;
                v[r] = r < rows ? (__m512)_mm512_cvtne2ps_pbh(_mm512_maskz_loadu_ps(m1, xm + 16),
                                                              _mm512_maskz_loadu_ps(m0, xm))
                                : _mm512_setzero_ps();
            }
            tr16(v); /* v[j]: pair k/2 + j of each row */
            for (int j = 0; j < 16 && k / 2 + j < np; j++)
                _mm512_mask_storeu_ps(xb + (k / 2 + j) * MRB, st, v[j]);
        }
    }
}

TARGET_512 static void pack_x_f32(const float *x, int64_t K, int kc, int64_t mc, float *xp) {
    const __mmask16 st = (__mmask16)((1u << MRB) - 1);
    __m512 v[16];
    for (int64_t b = 0; b * MRB < mc; b++) {
        float *xb = xp + b * kc * MRB;
        int rows = mc - b * MRB < MRB ? (int)(mc - b * MRB) : MRB;
        prefetch_x_rows(x + (b + 1) * MRB * K, K, kc, mc - (b + 1) * MRB);
        for (int k = 0; k < kc; k += 16) {
            int left = kc - k;
            __mmask16 m0 = left >= 16 ? 0xFFFF : (__mmask16)((1u << left) - 1);
            for (int r = 0; r < 16; r++)
                v[r] = r < rows ? _mm512_maskz_loadu_ps(m0, x + (b * MRB + r) * K + k) : _mm512_setzero_ps();
            tr16(v); /* v[i]: k + i of each row */
            for (int i = 0; i < 16 && k + i < kc; i++) _mm512_mask_storeu_ps(xb + (k + i) * MRB, st, v[i]);
        }
    }
}

/* W rows [nbase, nbase+nc) × k [k0, k0+kc) → panel[j][c] = bf16 pair j of
 * column c (zero for c ≥ nc), j < ceil(kc/2); rows: f32 scratch NR·2·KCX. */
TARGET_BF16 static void pack_panel_bf16(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0,
                                        int kc, uint32_t *panel, float *rows) {
    const float *src[NR];
    panel_sources(w, nbase, nc, k0, kc, rows, 2 * KCX, src);
    __m512 v[16];
    for (int cb = 0; cb < NR; cb += 16)
        for (int kb = 0; kb < kc; kb += 16) {
            load_tr16(src, cb, kb, kc, v); /* v[i]: k = kb + i, columns cb..cb+15 */
            for (int i = 0; i < 16; i += 2) {
                __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v[i]));
                __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(v[i + 1]));
                _mm512_storeu_si512(panel + (kb + i) / 2 * NR + cb,
                                    _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
            }
        }
}

/* Ask for W rows [nbase, nbase+nc) × k [k0, k0+kc) to be brought to L2:
 * the k-chunk-outer order reads each row in short pieces, which the
 * hardware prefetcher does not foresee. */
static void prefetch_panel(const mlxn_qmat *w, int64_t nbase, int nc, int64_t k0, int kc) {
    for (int c = 0; c < nc; c++) {
        const uint8_t *p, *s = NULL;
        size_t bytes, sbytes = 0;
        if (w->kind == MLXN_QKIND_MLX) {
            int64_t G = w->K / w->group;
            size_t es = w->sb_type == MLXN_F32 ? 4 : 2;
            p = (const uint8_t *)w->w + (size_t)(nbase + c) * (size_t)(w->K / 8 * w->bits) +
                (size_t)(k0 / 8 * w->bits);
            bytes = (size_t)(kc / 8 * w->bits);
            s = (const uint8_t *)w->scales + ((size_t)((nbase + c) * G + k0 / w->group)) * es;
            sbytes = (size_t)((kc + w->group - 1) / w->group) * es;
            for (size_t o = 0; o < sbytes; o += 64)
                __builtin_prefetch((const uint8_t *)w->biases + (s - (const uint8_t *)w->scales) + o, 0, 2);
        } else {
            size_t be = mlxn_dtype_block_elems(w->wtype), bb = mlxn_dtype_block_bytes(w->wtype);
            p = ggml_row(w, nbase + c) + (size_t)k0 / be * bb;
            bytes = ((size_t)kc + be - 1) / be * bb;
        }
        for (size_t o = 0; o < bytes; o += 64) __builtin_prefetch(p + o, 0, 2);
        for (size_t o = 0; o < sbytes; o += 64) __builtin_prefetch(s + o, 0, 2);
    }
}

/* y[r][c] (+)= Σ_j xp[j][r]·panel[j][c], r < mr, c < nc: MRB×32 f32
 * accumulators (24 registers), one x step broadcast per row, each panel row
 * reused by all MRB rows. One body, two multiply-adds: VFMADD (f32 steps)
 * and VDPBF16PS (bf16 pair steps). */
#define UKERNEL_12X32(NAME, TARGET, BT, MAC)                                                  \
    TARGET static void NAME(const uint32_t *xp, int mr, const uint32_t *panel, int np,       \
                            float *y, int64_t ldy, int nc, bool add) {                       \
        __m512 acc[MRB][2];                                                                  \
        _Pragma("GCC unroll 12") for (int r = 0; r < MRB; r++) acc[r][0] = acc[r][1] =       \
            _mm512_setzero_ps();                                                             \
        for (int j = 0; j < np; j++, xp += MRB, panel += NR) {                               \
            BT b0 = (BT)_mm512_loadu_si512(panel), b1 = (BT)_mm512_loadu_si512(panel + 16);  \
            _Pragma("GCC unroll 12") for (int r = 0; r < MRB; r++) {                         \
                BT a = (BT)_mm512_set1_epi32((int)xp[r]);                                    \
                acc[r][0] = MAC(acc[r][0], a, b0);                                           \
                acc[r][1] = MAC(acc[r][1], a, b1);                                           \
            }                                                                                \
        }                                                                                    \
        __mmask16 k0 = nc >= 16 ? 0xFFFF : (__mmask16)((1u << nc) - 1);                      \
        __mmask16 k1 = nc >= 32 ? 0xFFFF : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1); \
        for (int r = 0; r < mr; r++) {                                                       \
            float *yr = y + r * ldy;                                                         \
            __m512 v0 = acc[r][0], v1 = acc[r][1];                                           \
            if (add) {                                                                       \
                v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(k0, yr));                       \
                v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(k1, yr + 16));                  \
            }                                                                                \
            _mm512_mask_storeu_ps(yr, k0, v0);                                               \
            _mm512_mask_storeu_ps(yr + 16, k1, v1);                                          \
        }                                                                                    \
    }
#define MAC_F32(c, a, b) _mm512_fmadd_ps(a, b, c)
UKERNEL_12X32(ukernel_12x32_f32, TARGET_512, __m512, MAC_F32)
UKERNEL_12X32(ukernel_12x32_bf16, TARGET_BF16, __m512bh, _mm512_dpbf16_ps)
#undef MAC_F32
#undef UKERNEL_12X32

/* For each MCB rows of x, each NCB columns and each k chunk (KC f32 or
 * KCB bf16 steps): pack that x block (512 KB, L2), then for each NR-column
 * panel dequantize + pack W once (32 KB, L1) and run every MRB-row block
 * over it. Each W element is dequantized once per MCB rows; y is revisited
 * once per k chunk. (W panel outermost instead re-reads all of x from L3
 * per panel: 2x slower at K = 14336.) bf: the bf16 variant (use_bf16). */
/* The next k chunk of the blocked GEMM with `left` k to go, chunks of
 * kcmax: all of them when they fit 1.25 chunks (KCX steps). */
static int64_t gemm_kc(int64_t left, int64_t kcmax) {
    static int on = -1; /* MLXN_CPU_GEMM_KCX=0: chunks of kcmax only (measuring) */
    return left <= (mlxn_env_switch(&on, "MLXN_CPU_GEMM_KCX") ? kcmax + kcmax / 4 : kcmax) ? left : kcmax;
}
TARGET_512 static void gemm_blocked(const mlxn_qmat *w, const float *x, float *y, int64_t M,
                                    int64_t n0, int64_t n1, void *scratch, bool bf) {
    const int64_t K = w->K, N = w->N, kcmax = bf ? KCB : KC;
    uint32_t *xp = (uint32_t *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    int64_t mcmax = M < MCB ? M : MCB;
    uint32_t *panel = xp + al64((size_t)((mcmax + MRB - 1) / MRB * MRB) * KCX * 4) / 4;
    float *rows = (float *)(panel + KCX * NR);
    for (int64_t m0 = 0; m0 < M; m0 += MCB) {
        int64_t mc = M - m0 < MCB ? M - m0 : MCB;
        for (int64_t c0 = n0; c0 < n1; c0 += NCB) {
            int64_t c1 = n1 - c0 < NCB ? n1 : c0 + NCB;
            int kc;
            for (int64_t k0 = 0; k0 < K; k0 += kc) {
                kc = (int)gemm_kc(K - k0, kcmax);
                int np = bf ? (kc + 1) / 2 : kc;
                if (bf)
                    pack_x_bf16(x + m0 * K + k0, K, kc, mc, xp);
                else
                    pack_x_f32(x + m0 * K + k0, K, kc, mc, (float *)xp);
                for (int64_t nb = c0; nb < c1; nb += NR) {
                    int nc = (int)(c1 - nb < NR ? c1 - nb : NR);
                    if (bf)
                        pack_panel_bf16(w, nb, nc, k0, kc, panel, rows);
                    else
                        pack_panel_512(w, nb, nc, k0, kc, (float *)panel, rows);
                    if (nb + NR < c1)
                        prefetch_panel(w, nb + NR, (int)(c1 - nb - NR < NR ? c1 - nb - NR : NR), k0, kc);
                    for (int64_t m = 0; m < mc; m += MRB) {
                        int mr = (int)(mc - m < MRB ? mc - m : MRB);
                        float *yt = y + (m0 + m) * N + nb;
                        if (bf)
                            ukernel_12x32_bf16(xp + m * np, mr, panel, np, yt, N, nc, k0 > 0);
                        else
                            ukernel_12x32_f32(xp + m * np, mr, panel, np, yt, N, nc, k0 > 0);
                    }
                }
            }
        }
    }
}
#endif

/* Whether mlxn_mm takes the bf16 GEMM for (w, M): quantized weights only,
 * whose activations are already reduced (int8) on the decode path unless
 * f32_act; dense f32/f16/bf16 weights keep f32 x on every path. */
static bool use_bf16(const mlxn_qmat *w, int64_t M, int isa) {
#ifdef MLXN_X86
    bool quantized = w->kind == MLXN_QKIND_MLX ||
                     (w->wtype != MLXN_F32 && w->wtype != MLXN_F16 && w->wtype != MLXN_BF16);
    return isa == ISA_512 && quantized && !w->f32_act && M >= decode_rows(w, isa) && cpu_bf16();
#else
    (void)w;
    (void)M;
    (void)isa;
    return false;
#endif
}

bool mlxn_mm_rounds_bf16(const mlxn_qmat *w, int64_t M) { return use_bf16(w, M, isa_now()); }

static void gemm(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
                 void *scratch, int isa) {
#ifdef MLXN_X86
    bool bf = use_bf16(w, M, isa);
    if (bf || (isa == ISA_512 && M >= MDEC)) {
        gemm_blocked(w, x, y, M, n0, n1, scratch, bf);
        return;
    }
    if (isa == ISA_AVX2) {
        gemm_avx2(w, x, y, M, n0, n1, scratch);
        return;
    }
#endif
    float *panel = (float *)(((uintptr_t)scratch + 63) & ~(uintptr_t)63);
    float *tmp = panel + KC * NR, *zero = tmp + KCX * NR; /* tmp: NR rows of KCX (pack_panel_512's stride) */
    memset(zero, 0, KC * sizeof(float));
    const int64_t K = w->N ? w->K : 0, N = w->N;
    for (int64_t nb = n0; nb < n1; nb += NR) {
        int nc = (int)(n1 - nb < NR ? n1 - nb : NR);
        for (int64_t k0 = 0; k0 < K; k0 += KC) {
            int kc = (int)(K - k0 < KC ? K - k0 : KC);
#ifdef MLXN_X86
            if (isa == ISA_512)
                pack_panel_512(w, nb, nc, k0, kc, panel, tmp);
            else
#endif
                pack_panel(w, nb, nc, k0, kc, panel, tmp);
            for (int64_t m = 0; m < M; m += MR) {
                int mr = (int)(M - m < MR ? M - m : MR);
                const float *xr[MR];
                for (int i = 0; i < MR; i++) xr[i] = i < mr ? x + (m + i) * K + k0 : zero;
                float *yt = y + m * N + nb;
#ifdef MLXN_X86
                if (isa == ISA_512)
                    ukernel_512(xr, mr, panel, kc, yt, N, nc, k0 > 0);
                else
#endif
                    ukernel_scalar(xr, mr, panel, kc, yt, N, nc, k0 > 0);
            }
        }
    }
}

/* ------------------------------------------------------------------------ */
/* Entry points                                                               */
/* ------------------------------------------------------------------------ */

void mlxn_mm(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
             void *scratch) {
    if (n1 <= n0 || M <= 0) return;
    int isa = isa_now();
    if (M >= decode_rows(w, isa)) {
        gemm(w, x, y, M, n0, n1, scratch, isa);
        return;
    }
#ifdef MLXN_X86
    ggml_dot_fn fn;
    int layout, kind = isa == ISA_512 && !w->f32_act ? vnni_kind(w, &fn, &layout) : VK_NONE;
    if (kind != VK_NONE) {
        decode_vnni(w, kind, fn, layout, x, y, M, n0, n1, scratch);
        return;
    }
    if (avx2_parts(w, isa)) {
        mlxn_dec_avx2(w, x, y, M, n0, n1, scratch);
        return;
    }
#endif
    dec_scratch s = dec_layout(scratch, w->K, 0);
    decode_generic(w, x, y, M, n0, n1, s.row, isa);
}

void mlxn_mm_ggml(mlxn_dtype wtype, const void *w, size_t w_row_bytes, const float *x, float *y,
                  int64_t M, int64_t N, int64_t K, int64_t n0, int64_t n1, void *scratch) {
    mlxn_qmat q = {.kind = MLXN_QKIND_GGML, .N = N, .K = K, .w = w, .row_bytes = w_row_bytes,
                   .wtype = wtype};
    mlxn_mm(&q, x, y, M, n0, n1, scratch);
}

void mlxn_mm_mlx(const uint32_t *w, const void *scales, const void *biases, mlxn_dtype sb_type,
                 int bits, int group, const float *x, float *y, int64_t M, int64_t N, int64_t K,
                 int64_t n0, int64_t n1, void *scratch) {
    mlxn_qmat q = {.kind = MLXN_QKIND_MLX, .N = N, .K = K, .w = w, .scales = scales,
                   .biases = biases, .sb_type = sb_type, .bits = bits, .group = group};
    mlxn_mm(&q, x, y, M, n0, n1, scratch);
}

void mlxn_mm_id(const mlxn_qmat *w0, size_t w_stride, size_t sb_stride, int n_experts,
                const int32_t *ids, int64_t n_tok, int top_k, bool x_per_slot, const float *x,
                float *y, int64_t n0, int64_t n1, void *scratch) {
    const int64_t N = w0->N, K = w0->K;
    for (int64_t t = 0; t < n_tok; t++)
        for (int j = 0; j < top_k; j++) {
            int64_t slot = t * top_k + j;
            int32_t e = ids[slot];
            float *yr = y + slot * N;
            if (e < 0 || e >= n_experts) {
                for (int64_t n = n0; n < n1; n++) yr[n] = NAN;
                continue;
            }
            mlxn_qmat we = *w0;
            we.w = (const uint8_t *)w0->w + (size_t)e * w_stride;
            if (we.scales) we.scales = (const uint8_t *)w0->scales + (size_t)e * sb_stride;
            if (we.biases) we.biases = (const uint8_t *)w0->biases + (size_t)e * sb_stride;
            mlxn_mm(&we, x + (x_per_slot ? slot : t) * K, yr, 1, n0, n1, scratch);
        }
}
