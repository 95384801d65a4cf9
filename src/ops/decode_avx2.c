/*
 * decode_avx2.c — the decode matmuls (a few rows of x against every weight
 * row) for x86 CPUs that have AVX2, FMA and F16C but not AVX-512, such as
 * AMD Zen 2/3 and most laptops. Without them such a CPU fell back to
 * dequantizing every weight row to f32, a thousand times slower than the
 * memory allows.
 *
 * x is quantized per 32 elements to int8 codes c with step dx = amax/127
 * (the AVX-512 path's rounding). MLX weights also get the residual's codes
 * c2 at a step of dx/128, so x ≈ dx·(c + c2/128): int8 alone moved the
 * default model's greedy tokens away from mlx-lm's (bench/RESULTS.md, the
 * "two int8 parts" entry); GGML formats keep llama.cpp's single int8 x.
 *
 * Products: u8 weight codes times s8 x codes by maddubs (pairs summed into
 * int16), then madd into int32 lanes. A pair stays in int16: 4-bit codes
 * give at most 2·15·127; 8-bit codes go in as q-128 with x's sign moved
 * onto them (|q-128| ≤ 128: 2·128·127 = 32512). MLX 8-bit with x in two
 * parts instead takes x as int16 128·c + c2 and the codes zero-extended to
 * int16, by madd alone: the same integer sums in half the instructions.
 * MLX 2/3/5/6-bit takes x the same way (or c alone with int8 x), its codes
 * unpacked to int16 by a shuffle, a multiply and a shift (dot_mlxb_t).
 * Per block of 32 the int32 lanes go to f32 and into an FMA with the
 * block's factor (weight scale × dx); offsets (q4_0's -8, q4_1's m, MLX biases, q4_k's mins, 8-bit's +128)
 * are taken once per block or group through Σx.
 */
#include "ops/decode_avx2.h"

#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#include "core/simd256.h"

#define T2 __attribute__((target("avx2,fma,f16c")))
#define INL __attribute__((always_inline)) static inline

enum { K_NONE, K_MLX4, K_MLX8, K_MLXB, K_Q40, K_Q41, K_Q80, K_Q4K, K_Q5K, K_Q6K };

static int kind_of(const mlxn_qmat *w) {
    if (w->f32_act || w->K % 32) return K_NONE;
    if (w->kind == MLXN_QKIND_MLX) return w->bits == 4 ? K_MLX4 : w->bits == 8 ? K_MLX8 : K_MLXB; /* 2, 3, 5, 6 */
    switch (w->wtype) {
    case MLXN_Q4_0: return K_Q40;
    case MLXN_Q4_1: return K_Q41;
    case MLXN_Q8_0: return K_Q80;
    case MLXN_Q4_K: return K_Q4K;
    case MLXN_Q5_K: return K_Q5K;
    case MLXN_Q6_K: return K_Q6K;
    default: return K_NONE;
    }
}

int mlxn_dec_avx2_parts(const mlxn_qmat *w) {
    int k = kind_of(w);
    if (k == K_NONE) return 0;
    return (k == K_MLX4 || k == K_MLX8 || k == K_MLXB) && !w->int8_act ? 2 : 1;
}

/* One x row, quantized. Codes in natural order, except for MLX 4-bit:
 * there a byte holds elements 2i (low nibble) and 2i+1 (high), so two
 * blocks' 32 code bytes give their evens in low nibbles and odds in high;
 * x is laid out per block pair as [evens b | evens b+1 | odds b | odds b+1]
 * (16 codes each), a last odd block as [evens | ... | odds | ...] alike. */
typedef struct xrow {
    int8_t *c, *c2; /* codes, residual codes (two parts) */
    float *dx;      /* per block: the step of the last part */
    float *xs;      /* per block: Σ c (q4_0's -8 offset) */
    int32_t *xs16;  /* q6_k: per 16 elements, Σ c (its -32 offset, scales per 16) */
    int16_t *x16;   /* MLX 8-bit with two parts, 2/3/5/6-bit: 128·c + c2 (or c alone) as int16,
                     * in natural order, in c's and c2's space */
    float *xg;      /* per block: Σ x as the codes give it */
    float *xgg;     /* per MLX group: Σ xg */
} xrow;

/* Software prefetch of the weight stream PF_AVX2 bytes ahead into L2,
 * one per step of a dot loop (rows are contiguous: near a row's end it
 * runs on into the next rows; x86 prefetches never fault). Dev Zen 3, 2
 * threads, one-row bench ops, 7 formats x 4 shapes, min of 3 alternated
 * rounds: without it 640-9150 µs, at 4 KB 470-8000 µs (q4_1 4096x14336
 * 2860 -> 1943, mlx-q4-g64 14336x4096 2640 -> 1600); 2, 8 and 12 KB
 * within the spread of 4 KB (bench/RESULTS.md). */
#ifndef PF_AVX2
#define PF_AVX2 4096
#endif
#define PF2(p)                                                                 \
    do {                                                                       \
        if (PF_AVX2) _mm_prefetch((const char *)(p) + PF_AVX2, _MM_HINT_T1);   \
    } while (0)

/* Two rows a step (r1 = r0 + rs): the offset from which PF2's target would
 * leave r0 for r1, which is being read already; from there both rows'
 * prefetches skip a row (r0's into the next pair's first row, r1's into its
 * second), so the next pair's second row is prefetched too: before, the
 * first PF_AVX2 bytes of every second row were not. Rows no longer than the
 * distance keep running on (SIZE_MAX). Dev Zen 3, 2 threads, one-row bench
 * ops 4096x14336, 3 alternated rounds: q4_0 2379-2664 -> 1844-2217 µs,
 * q4_1 2541-2773 -> 1915-2551, mlx-q4-g64 2598-3062 -> 2064-2318
 * (bench/RESULTS.md). */
static inline size_t pf_pair_at(size_t rs) { return rs > PF_AVX2 ? rs - PF_AVX2 : SIZE_MAX; }
/* Whether one-row 4-bit matmuls (q4_0, q4_1, MLX) take rows two at a time,
 * sharing x's loads and the horizontal sums: where rows are short (K <
 * 1024: the per-row work is a large share of a row) or longer than the
 * prefetch distance (rb bytes a row; pf_pair_at). In between, single rows
 * streamed faster. Dev Zen 3, one binary switching the two: SmolLM2 Q4_1
 * decode (its down projection, K = 1536) -2.0 to -5.0 % step time in 5
 * runs of alternated steps (a null run: -1.1 to +0.9 %), MLX -0.7 to
 * -2.4 %; one-row 4096 x K at 1 thread, K = 1024 / 1536 / 2048, q4_1
 * 405-505 / 491-622 / 674-750 us in pairs, 255-450 / 342-578 / 452-603
 * single; at K = 14336 pairs stayed ahead (bench/RESULTS.md). */
static inline bool pair_rows(int64_t K, size_t rb) { return K < 1024 || rb > PF_AVX2; }

static size_t al32(size_t n) { return (n + 31) & ~(size_t)31; }

/* MLX scales and biases are converted to f32 for a run of rows at once:
 * as many rows as fit SB_CHUNK values (at least 2). */
#define SB_CHUNK 4096
static int64_t sb_rows(int64_t G) { return SB_CHUNK / G >= 2 ? SB_CHUNK / G : 2; }
/* f32 room for one run's scales (or biases) at any group size of K: a run
 * holds at most max(2G, SB_CHUNK) values, G ≤ K / 32, and the last row's
 * vector reads run up to 8 past it. */
static size_t sb_bytes(int64_t K) {
    const int64_t g = K / 32;
    return al32((size_t)((2 * g > SB_CHUNK ? 2 * g : SB_CHUNK) + 8) * 4);
}

size_t mlxn_dec_avx2_scratch(int64_t K, int64_t M) {
    size_t nb = (size_t)K / 32, v = al32(nb * 4);
    /* codes: K + 32, a last odd MLX 4-bit block's odds sit past K */
    /* a run of rows' scales and biases as f32, the MLX 2/3/5/6-bit last
     * row's copy (≤ 6K/8 bytes + 32 zeros) and per-block factors (v) */
    return 32 + 2 * sb_bytes(K) + v + al32((size_t)K + 32) + (size_t)(M > 0 ? M : 1) * (2 * al32((size_t)K + 32) + 6 * v);
}

T2 INL int hsum8i(__m256i v) {
    __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4E));
    h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xB1));
    return _mm_cvtsi128_si32(h);
}

/* Floats p[0], p[1] into lanes 0, 1 (any alignment: runs of MLX scales
 * start at odd indices). */
T2 INL __m128 ld2(const float *p) { return _mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(const void *)p)); }

/* A mask of the first n lanes (0 < n < 8). */
T2 INL __m256 first_lanes(int64_t n) {
    static const int32_t keep[16] = {-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0};
    return _mm256_castsi256_ps(_mm256_loadu_si256((const __m256i *)(keep + 8 - n)));
}

/* The sums of v0's and of v1's lanes, in lanes 0 and 1. */
T2 INL __m128 hsum2_256(__m256 v0, __m256 v1) {
    const __m256 h = _mm256_hadd_ps(v0, v1); /* v0 01 23, v1 01 23 | v0 45 67, v1 45 67 */
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    return _mm_hadd_ps(q, q);
}

/* 32 int32 codes (4 x 8 lanes, each in [-128, 127]) → 32 int8 in order. */
T2 INL __m256i pack32(const __m256i q[4]) {
    __m256i b = _mm256_packs_epi16(_mm256_packs_epi32(q[0], q[1]), _mm256_packs_epi32(q[2], q[3]));
    return _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}
/* Natural order → per 16: evens then odds; then the four 8-byte quarters
 * as [evens 0-15 | evens 16-31 | odds 0-15 | odds 16-31]. */
T2 INL __m256i evens_odds(__m256i v) {
    const __m256i sh = _mm256_setr_epi8(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15, 0, 2, 4, 6, 8, 10,
                                        12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm256_permute4x64_epi64(_mm256_shuffle_epi8(v, sh), 0xD8);
}
/* x code layouts: natural; MLX 4-bit's evens / odds per block pair (see
 * xrow); q4_0 / q4_1's halves per block pair, [elements 0-15 of b | of b+1
 * | 16-31 of b | of b+1], the order of two blocks' low and high nibbles. */
enum { XL_NAT, XL_MLX4, XL_HALVES };
/* Store block b's 32 codes v in layout lay. */
T2 INL void put_codes(int8_t *dst, int64_t b, __m256i v, int lay) {
    if (lay == XL_NAT) {
        _mm256_storeu_si256((__m256i *)(dst + 32 * b), v);
        return;
    }
    if (lay == XL_MLX4) v = evens_odds(v);
    int8_t *p = dst + 64 * (b / 2) + 16 * (b % 2);
    _mm_storeu_si128((__m128i *)p, _mm256_castsi256_si128(v));
    _mm_storeu_si128((__m128i *)(p + 32), _mm256_extracti128_si256(v, 1));
}

T2 static void quant_x(const float *x, int64_t K, const xrow *r, int lay, bool two, bool s16) {
    const __m256 absm = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    const __m256i hi = _mm256_set1_epi32(127), lo = _mm256_set1_epi32(-127);
    for (int64_t b = 0; b < K / 32; b++) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int i = 0; i < 4; i++) {
            v[i] = _mm256_loadu_ps(x + 32 * b + 8 * i);
            m = _mm256_max_ps(m, _mm256_and_ps(v[i], absm));
        }
        __m128 h = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps(m, 1));
        h = _mm_max_ps(h, _mm_movehl_ps(h, h));
        h = _mm_max_ss(h, _mm_movehdup_ps(h));
        const float amax = _mm_cvtss_f32(h), id = amax > 0 ? 127.0f / amax : 0.0f;
        __m256i q[4], q2[4], s = _mm256_setzero_si256(), s2 = _mm256_setzero_si256();
        for (int i = 0; i < 4; i++) {
            const __m256 t = _mm256_mul_ps(v[i], _mm256_set1_ps(id));
            q[i] = _mm256_max_epi32(_mm256_min_epi32(_mm256_cvtps_epi32(t), hi), lo);
            s = _mm256_add_epi32(s, q[i]);
            if (two) { /* the residual in [-1/2, 1/2] steps: codes in [-64, 64] */
                q2[i] = _mm256_cvtps_epi32(
                    _mm256_mul_ps(_mm256_sub_ps(t, _mm256_cvtepi32_ps(q[i])), _mm256_set1_ps(128.0f)));
                s2 = _mm256_add_epi32(s2, q2[i]);
            }
        }
        if (!r->x16) put_codes(r->c, b, pack32(q), lay);
        r->xs[b] = (float)hsum8i(s);
        if (s16) { /* q6_k's scales per 16 */
            r->xs16[2 * b] = hsum8i(_mm256_add_epi32(q[0], q[1]));
            r->xs16[2 * b + 1] = hsum8i(_mm256_add_epi32(q[2], q[3]));
        }
        if (r->x16) { /* 128·c + c2, |.| ≤ 128·127 + 64, or c: int16 */
            __m256i c16[4];
            for (int i = 0; i < 4; i++) c16[i] = two ? _mm256_add_epi32(_mm256_slli_epi32(q[i], 7), q2[i]) : q[i];
            _mm256_storeu_si256((__m256i *)(r->x16 + 32 * b),
                                _mm256_permute4x64_epi64(_mm256_packs_epi32(c16[0], c16[1]), 0xD8));
            _mm256_storeu_si256((__m256i *)(r->x16 + 32 * b + 16),
                                _mm256_permute4x64_epi64(_mm256_packs_epi32(c16[2], c16[3]), 0xD8));
        }
        if (two) {
            if (!r->x16) put_codes(r->c2, b, pack32(q2), lay);
            r->dx[b] = amax / 127.0f / 128.0f;
            r->xg[b] = r->dx[b] * (128.0f * r->xs[b] + (float)hsum8i(s2));
        } else {
            r->dx[b] = amax / 127.0f;
            r->xg[b] = r->dx[b] * r->xs[b];
        }
    }
}

/* Σ w·c over a block, int32 lanes: w unsigned codes (< 128), c signed. */
T2 INL __m256i dot_u(__m256i w, __m256i c) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(w, c), _mm256_set1_epi16(1));
}
/* Two parts: 128·Σ w·c + Σ w·c2. */
T2 INL __m256i dot_u2(__m256i w, __m256i c, __m256i c2) {
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(w, c), _mm256_set1_epi16(128)),
                            _mm256_madd_epi16(_mm256_maddubs_epi16(w, c2), _mm256_set1_epi16(1)));
}
/* 16 code bytes → 32 nibbles: low ones in the low lane, high in the high. */
T2 INL __m256i nibbles16(const uint8_t *p) {
    __m128i v = _mm_loadu_si128((const __m128i *)p);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

/* A last odd q4_0 / q4_1 block b (at p) against x in XL_HALVES: its
 * elements 0-15 at x->c + 32b, 16-31 at + 32. */
T2 INL float q4_last(const uint8_t *p, const xrow *x, int64_t b, const bool q41) {
    const int8_t *c = x->c + 32 * b;
    const __m256i xc = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(c + 32)), _mm_loadu_si128((const __m128i *)c));
    uint16_t d;
    memcpy(&d, p, 2);
    const float f = mlxn_h2f_f16c(d) * x->dx[b];
    const float s = f * mlxn_hsum_256(_mm256_cvtepi32_ps(dot_u(nibbles16(p + (q41 ? 4 : 2)), xc)));
    if (q41) {
        uint16_t m;
        memcpy(&m, p + 2, 2);
        return s + mlxn_h2f_f16c(m) * x->xg[b];
    }
    return s - 8.0f * f * x->xs[b];
}

/* q4_0 / q4_1 row against x in XL_HALVES: two blocks a step, their 16
 * code bytes side by side in one vector, so the low nibbles of both meet x's
 * elements 0-15 of both and the high ones 16-31; the products summed to
 * int32 per block (lanes 0-3 block b, 4-7 block b+1) take the two blocks'
 * factors d·dx in one FMA. Σ_b d·dx·(Σ q·c) + (q4_0) -8·d·dx·Σc or (q4_1)
 * m·Σx; the offsets two lanes at a time. */
T2 INL float dot_q4(const uint8_t *row, const xrow *x, int64_t nb, const bool q41) {
    const size_t bs = q41 ? sizeof(mlxn_block_q4_1) : sizeof(mlxn_block_q4_0);
    const int off = q41 ? 4 : 2;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi16(1);
    const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m128 cor = _mm_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *p = row + (size_t)b * bs;
        PF2(p);
        const __m256i v = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(p + bs + off)),
                                           _mm_loadu_si128((const __m128i *)(p + off)));
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        const int8_t *c = x->c + 32 * b;
        /* int16 pairs: at most 2·(2·15·127) */
        const __m256i pr = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)c)),
                                            _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(c + 32))));
        const __m256 sf = _mm256_cvtepi32_ps(_mm256_madd_epi16(pr, one));
        /* lanes: q4_0 [d_b d_b+1 ..], q4_1 [d_b m_b d_b+1 m_b+1] */
        uint32_t w0, w1;
        memcpy(&w0, p, 4);
        memcpy(&w1, p + bs, 4);
        __m128 dm;
        if (q41)
            dm = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128((int)w0), _mm_cvtsi32_si128((int)w1)));
        else
            dm = _mm_cvtph_ps(_mm_cvtsi32_si128((int)((w0 & 0xFFFF) | (w1 << 16))));
        const __m128 d2 = q41 ? _mm_shuffle_ps(dm, dm, 0x08) : dm; /* d_b, d_b+1 in lanes 0, 1 */
        const __m128 f2 = _mm_mul_ps(d2, ld2(x->dx + b));
        if (q41)
            cor = _mm_fmadd_ps(_mm_shuffle_ps(dm, dm, 0x0D), ld2(x->xg + b), cor);
        else
            cor = _mm_fmadd_ps(f2, ld2(x->xs + b), cor);
        const __m256 t = _mm256_fmadd_ps(sf, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f2), pair), a0);
        a0 = a1; /* two chains, no branch */
        a1 = t;
    }
    const float tail = b < nb ? q4_last(row + (size_t)b * bs, x, b, q41) : 0.0f;
    __m128 c2 = _mm_add_ps(cor, _mm_movehdup_ps(cor)); /* lanes 0 + 1 */
    const float o = _mm_cvtss_f32(c2);
    return mlxn_hsum_256(_mm256_add_ps(a0, a1)) + (q41 ? o : -8.0f * o) + tail;
}

/* dot_q4 for rows r0 and r1 at once: x's loads and the horizontal sums
 * shared by the pair. */
T2 INL void dot_q4x2(const uint8_t *r0, const uint8_t *r1, const xrow *x, int64_t nb, float *y0, float *y1,
                     const bool q41) {
    const size_t bs = q41 ? sizeof(mlxn_block_q4_1) : sizeof(mlxn_block_q4_0);
    const int off = q41 ? 4 : 2;
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi16(1);
    const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    __m128 cor = _mm_setzero_ps(); /* lanes 0-1 row 0, 2-3 row 1 */
    const size_t rs = (size_t)(r1 - r0), at = pf_pair_at(rs);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *p = r0 + (size_t)b * bs, *q = r1 + (size_t)b * bs;
        const size_t sk = (size_t)b * bs >= at ? rs : 0;
        PF2(p + sk);
        PF2(q + sk);
        const __m256i v0 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(p + bs + off)),
                                            _mm_loadu_si128((const __m128i *)(p + off)));
        const __m256i v1 = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(q + bs + off)),
                                            _mm_loadu_si128((const __m128i *)(q + off)));
        const int8_t *c = x->c + 32 * b;
        const __m256i cl = _mm256_loadu_si256((const __m256i *)c), ch = _mm256_loadu_si256((const __m256i *)(c + 32));
        const __m256i p0 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v0, m4), cl),
                                            _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v0, 4), m4), ch));
        const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(_mm256_and_si256(v1, m4), cl),
                                            _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v1, 4), m4), ch));
        /* d of the four blocks in lanes [p_b, p_b+1, q_b, q_b+1] (q4_1: m
         * in the same order), for the per-row factors and offsets */
        uint32_t w[4];
        memcpy(&w[0], p, 4);
        memcpy(&w[1], p + bs, 4);
        memcpy(&w[2], q, 4);
        memcpy(&w[3], q + bs, 4);
        const __m128 dx2 = ld2(x->dx + b);
        __m128 d4, f4;
        if (q41) { /* [d m d m] of each row, then d's and m's of both */
            const __m128 dp = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128((int)w[0]), _mm_cvtsi32_si128((int)w[1])));
            const __m128 dq = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128((int)w[2]), _mm_cvtsi32_si128((int)w[3])));
            d4 = _mm_shuffle_ps(dp, dq, 0x88);              /* d: p_b p_b+1 q_b q_b+1 */
            const __m128 m4f = _mm_shuffle_ps(dp, dq, 0xDD); /* m: the same order */
            const __m128 xg2 = ld2(x->xg + b);
            cor = _mm_fmadd_ps(m4f, _mm_movelh_ps(xg2, xg2), cor);
        } else {
            d4 = _mm_cvtph_ps(_mm_unpacklo_epi32(_mm_cvtsi32_si128((int)((w[0] & 0xFFFF) | (w[1] << 16))),
                                                 _mm_cvtsi32_si128((int)((w[2] & 0xFFFF) | (w[3] << 16)))));
        }
        f4 = _mm_mul_ps(d4, _mm_movelh_ps(dx2, dx2));
        if (!q41) {
            const __m128 xs2 = ld2(x->xs + b);
            cor = _mm_fmadd_ps(f4, _mm_movelh_ps(xs2, xs2), cor);
        }
        const __m256 f8 = _mm256_castps128_ps256(f4);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p0, one)), _mm256_permutevar8x32_ps(f8, pair), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_madd_epi16(p1, one)),
                             _mm256_permutevar8x32_ps(f8, _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3)), a1);
    }
    __m128 r = hsum2_256(a0, a1);
    const __m128 o = _mm_hadd_ps(cor, cor); /* row 0, row 1 */
    r = q41 ? _mm_add_ps(r, o) : _mm_fmadd_ps(_mm_set1_ps(-8.0f), o, r);
    float t0 = _mm_cvtss_f32(r), t1 = _mm_cvtss_f32(_mm_movehdup_ps(r));
    if (b < nb) { /* a last odd block */
        t0 += q4_last(r0 + (size_t)b * bs, x, b, q41);
        t1 += q4_last(r1 + (size_t)b * bs, x, b, q41);
    }
    *y0 = t0;
    *y1 = t1;
}

/* dot_q4 with q41 a constant */
T2 INL float dot_q40(const uint8_t *row, const xrow *x, int64_t nb) { return dot_q4(row, x, nb, false); }
T2 INL float dot_q41(const uint8_t *row, const xrow *x, int64_t nb) { return dot_q4(row, x, nb, true); }

/* Signed codes w against c: |w| against c with w's sign (0 where w is 0). */
T2 INL __m256i dot_s(__m256i w, __m256i c) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(c, w)),
                             _mm256_set1_epi16(1));
}

T2 static float dot_q80(const uint8_t *row, const xrow *x, int64_t nb) {
    const size_t bs = sizeof(mlxn_block_q8_0);
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) {
        const uint8_t *p = row + (size_t)b * bs;
        PF2(p);
        uint16_t d0, d1;
        memcpy(&d0, p, 2);
        memcpy(&d1, p + bs, 2);
        __m256i s0 = dot_s(_mm256_loadu_si256((const __m256i *)(p + 2)),
                           _mm256_loadu_si256((const __m256i *)(x->c + 32 * b)));
        __m256i s1 = dot_s(_mm256_loadu_si256((const __m256i *)(p + bs + 2)),
                           _mm256_loadu_si256((const __m256i *)(x->c + 32 * b + 32)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(mlxn_h2f_f16c(d0) * x->dx[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_set1_ps(mlxn_h2f_f16c(d1) * x->dx[b + 1]), a1);
    }
    for (; b < nb; b++) {
        const uint8_t *p = row + (size_t)b * bs;
        uint16_t d0;
        memcpy(&d0, p, 2);
        __m256i s0 = dot_s(_mm256_loadu_si256((const __m256i *)(p + 2)),
                           _mm256_loadu_si256((const __m256i *)(x->c + 32 * b)));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_set1_ps(mlxn_h2f_f16c(d0) * x->dx[b]), a0);
    }
    return mlxn_hsum_256(_mm256_add_ps(a0, a1));
}


/* The sum of four accumulators' lanes (the k-quant dots' four sums). */
T2 INL float hsum4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
    return mlxn_hsum_256(_mm256_add_ps(_mm256_add_ps(a, b), _mm256_add_ps(c, d)));
}

/* q4_k: sub-block j of 32 is d·sc_j·q - dmin·m_j; a 32-byte chunk of qs
 * holds sub-block 2i in its low nibbles and 2i+1 in its high ones. The 8
 * sub-blocks of a super-block go into four sums, two chunks a step (into
 * one sum, a chain of 8 FMA latencies a super-block bounded the kernel:
 * bench/RESULTS.md, 2026-11-29 session of 17:48). */
T2 INL void q4k_chunk(const uint8_t *qs, const int8_t *c, __m256 f, int i, __m256i m4, __m256 *a0, __m256 *a1) {
    PF2(qs);
    const __m256i v = _mm256_loadu_si256((const __m256i *)qs);
    __m256i s0 = dot_u(_mm256_and_si256(v, m4), _mm256_loadu_si256((const __m256i *)c));
    __m256i s1 = dot_u(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), _mm256_loadu_si256((const __m256i *)(c + 32)));
    *a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * i)), *a0);
    *a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * i + 1)), *a1);
}
T2 static float dot_q4k(const uint8_t *row, const xrow *x, int64_t nsb) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
    __m256 cor = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    for (int64_t j = 0; j < nsb; j++) {
        const mlxn_block_q4_k *blk = (const mlxn_block_q4_k *)(const void *)(row + (size_t)j * sizeof *blk);
        uint32_t u[4];
        mlxn_k4_unpack(blk->scales, u);
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
        const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2))));
        const float *dx = x->dx + 8 * j;
        const __m256 f = _mm256_mul_ps(_mm256_mul_ps(sc, _mm256_set1_ps(mlxn_h2f_f16c(blk->d))), _mm256_loadu_ps(dx));
        cor = _mm256_fmadd_ps(_mm256_mul_ps(mn, _mm256_set1_ps(mlxn_h2f_f16c(blk->dmin))), _mm256_loadu_ps(x->xg + 8 * j),
                              cor);
        const int8_t *c = x->c + 256 * j;
        q4k_chunk(blk->qs, c, f, 0, m4, &a0, &a1);
        q4k_chunk(blk->qs + 32, c + 64, f, 1, m4, &a2, &a3);
        q4k_chunk(blk->qs + 64, c + 128, f, 2, m4, &a0, &a1);
        q4k_chunk(blk->qs + 96, c + 192, f, 3, m4, &a2, &a3);
    }
    return hsum4_256(a0, a1, a2, a3) - mlxn_hsum_256(cor);
}

/* q5_k: q4_k with a fifth bit per code, bit j of qh[l] for element 32 j + l. */
T2 static float dot_q5k(const uint8_t *row, const xrow *x, int64_t nsb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 cor = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), one = _mm256_set1_epi8(1);
    for (int64_t j = 0; j < nsb; j++) {
        const mlxn_block_q5_k *blk = (const mlxn_block_q5_k *)(const void *)(row + (size_t)j * sizeof *blk);
        uint32_t u[4];
        mlxn_k4_unpack(blk->scales, u);
        const __m256 sc = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)u)));
        const __m256 mn = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(u + 2))));
        const __m256 f = _mm256_mul_ps(_mm256_mul_ps(sc, _mm256_set1_ps(mlxn_h2f_f16c(blk->d))), _mm256_loadu_ps(x->dx + 8 * j));
        cor = _mm256_fmadd_ps(_mm256_mul_ps(mn, _mm256_set1_ps(mlxn_h2f_f16c(blk->dmin))), _mm256_loadu_ps(x->xg + 8 * j),
                              cor);
        const int8_t *c = x->c + 256 * j;
        __m256i qh = _mm256_loadu_si256((const __m256i *)blk->qh);
#pragma GCC unroll 4
        for (int i = 0; i < 4; i++) { /* four sums, as dot_q4k (constant indices once unrolled) */
            PF2(blk->qs + 32 * i);
            const __m256i v = _mm256_loadu_si256((const __m256i *)(blk->qs + 32 * i));
            /* bit 2i of qh for the low nibbles, 2i+1 for the high: the
             * lowest bit each time, qh shifted down by two a pair */
            const __m256i h0 = _mm256_slli_epi16(_mm256_and_si256(qh, one), 4);
            const __m256i h1 = _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 1), one), 4);
            qh = _mm256_srli_epi16(qh, 2);
            __m256i s0 = dot_u(_mm256_or_si256(_mm256_and_si256(v, m4), h0),
                               _mm256_loadu_si256((const __m256i *)(c + 64 * i)));
            __m256i s1 = dot_u(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(v, 4), m4), h1),
                               _mm256_loadu_si256((const __m256i *)(c + 64 * i + 32)));
            acc[2 * (i & 1)] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s0), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * i)),
                                               acc[2 * (i & 1)]);
            acc[2 * (i & 1) + 1] =
                _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * i + 1)),
                                                   acc[2 * (i & 1) + 1]);
        }
    }
    return hsum4_256(acc[0], acc[1], acc[2], acc[3]) - mlxn_hsum_256(cor);
}

/* q6_k: 6-bit codes q - 32 with an int8 scale per 16. Per half of 128: 32
 * bytes of ql give elements 0-31 (low nibbles) and 64-95 (high), the next
 * 32 bytes 32-63 and 96-127; qh's bit pairs 0, 2, 4, 6 are the top bits of
 * those four. The products take the scales per 16 inside madd; the -32
 * offset comes off as 32·Σ sc·Σc per 16. */
T2 static float dot_q6k(const uint8_t *row, const xrow *x, int64_t nsb) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    __m256 cor = _mm256_setzero_ps();
    const __m256i m4 = _mm256_set1_epi8(0x0F), m3 = _mm256_set1_epi8(3);
    /* scale words 2g (low lane) and 2g+1 (high lane), each broadcast 8x */
    __m256i sel[4];
    for (int g = 0; g < 4; g++) {
        const char a = (char)(4 * g), b = (char)(4 * g + 2);
        sel[g] = _mm256_setr_epi8(a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a,
                                  (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), a, (char)(a + 1), b,
                                  (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b,
                                  (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1), b, (char)(b + 1));
    }
    const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
    for (int64_t j = 0; j < nsb; j++) {
        const mlxn_block_q6_k *blk = (const mlxn_block_q6_k *)(const void *)(row + (size_t)j * sizeof *blk);
        const __m256 d = _mm256_set1_ps(mlxn_h2f_f16c(blk->d));
        for (int hf = 0; hf < 2; hf++) {
            const uint8_t *ql = blk->ql + 64 * hf, *qhp = blk->qh + 32 * hf;
            PF2(ql);
            PF2(ql + 64);
            const __m128i sc16 = _mm_cvtepi8_epi16(_mm_loadl_epi64((const __m128i *)(blk->scales + 8 * hf)));
            const __m256i scb = _mm256_broadcastsi128_si256(sc16);
            const __m256i a = _mm256_loadu_si256((const __m256i *)ql), b = _mm256_loadu_si256((const __m256i *)(ql + 32));
            const __m256i h = _mm256_loadu_si256((const __m256i *)qhp);
            __m256i q[4];
            q[0] = _mm256_or_si256(_mm256_and_si256(a, m4), _mm256_slli_epi16(_mm256_and_si256(h, m3), 4));
            q[1] = _mm256_or_si256(_mm256_and_si256(b, m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 2), m3), 4));
            q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(a, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 4), m3), 4));
            q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(b, 4), m4),
                                   _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, 6), m3), 4));
            const int64_t xb0 = 8 * j + 4 * hf; /* x blocks xb0 .. xb0 + 3 */
            /* d·dx per x block, each twice (its two groups of 16) */
            const __m256 f = _mm256_mul_ps(
                d, _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(x->dx + xb0)), pairs));
#pragma GCC unroll 4
            for (int g = 0; g < 4; g++) { /* x block xb0 + g: scales sc[2g] / sc[2g+1] per 16; a sum each */
                const __m256i p = _mm256_maddubs_epi16(q[g], _mm256_loadu_si256((const __m256i *)(x->c + 32 * (xb0 + g))));
                const __m256i s = _mm256_madd_epi16(p, _mm256_shuffle_epi8(scb, sel[g]));
                const __m256 fb = _mm256_permutevar8x32_ps(f, _mm256_set1_epi32(2 * g));
                acc[g] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), fb, acc[g]);
            }
            /* the -32 offset: 32·sc_i·Σc of each 16 (8 of them), times d·dx */
            const __m256i o = _mm256_mullo_epi32(_mm256_cvtepi16_epi32(sc16),
                                                 _mm256_loadu_si256((const __m256i *)(x->xs16 + 2 * xb0)));
            cor = _mm256_fmadd_ps(_mm256_cvtepi32_ps(o), f, cor);
        }
    }
    return hsum4_256(acc[0], acc[1], acc[2], acc[3]) - 32.0f * mlxn_hsum_256(cor);
}

/* 8 scales or biases (16-bit, or f32) from p as f32. */
T2 INL __m256 sb8(const void *p, int t) {
    if (t == MLXN_F32) return _mm256_loadu_ps((const float *)p);
    const __m128i h = _mm_loadu_si128((const __m128i *)p);
    if (t == MLXN_BF16) return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
    return _mm256_cvtph_ps(h);
}
/* MLX scales and biases [e0, e1) (element indices: row n's are [n·G,
 * (n+1)·G)) as f32 into sc / bi, and the 1-7 after them as zeros up to a
 * multiple of 8 (the vector loops over a last row then run without a
 * tail). */
T2 static void mlx_sb_run(const mlxn_qmat *w, int64_t e0, int64_t e1, float *sc, float *bi) {
    const int t = w->sb_type;
    const size_t es = t == MLXN_F32 ? 4 : 2, total = (size_t)(w->N * (w->K / w->group));
    const uint8_t *s = (const uint8_t *)w->scales + (size_t)e0 * es, *b = (const uint8_t *)w->biases + (size_t)e0 * es;
    const int64_t G = e1 - e0;
    int64_t g = 0;
    for (; g + 8 <= G; g += 8) {
        _mm256_storeu_ps(sc + g, sb8(s + (size_t)g * es, t));
        _mm256_storeu_ps(bi + g, sb8(b + (size_t)g * es, t));
    }
    if (g < G && (size_t)(e0 + g + 8) <= total) {
        /* the last 1-7: 8 loaded (still inside the tensor), the rest zeroed */
        const __m256 m = first_lanes(G - g);
        _mm256_storeu_ps(sc + g, _mm256_and_ps(m, sb8(s + (size_t)g * es, t)));
        _mm256_storeu_ps(bi + g, _mm256_and_ps(m, sb8(b + (size_t)g * es, t)));
    } else if (g < G) { /* the tensor's end: through a zeroed copy */
        _Alignas(32) uint8_t ts[32] = {0}, tb[32] = {0};
        memcpy(ts, s + (size_t)g * es, (size_t)(G - g) * es);
        memcpy(tb, b + (size_t)g * es, (size_t)(G - g) * es);
        _mm256_storeu_ps(sc + g, sb8(ts, t));
        _mm256_storeu_ps(bi + g, sb8(tb, t));
    }
}

/* Σ_g v_g·xgg_g (8-bit: (bias + 128·scale)·Σx, for q - 128; 4-bit: bias·Σx),
 * over G (values past it masked), in 8 lanes
 * (a caller with lanes of its own sums them all once). */
T2 INL __m256 mlx_offsets_v(const float *sc, const float *bi, const float *xgg, int64_t G, bool b8) {
    __m256 a = _mm256_setzero_ps();
    const __m256 k = _mm256_set1_ps(b8 ? 128.0f : 0.0f);
    int64_t g = 0;
    for (; g + 8 <= G; g += 8)
        a = _mm256_fmadd_ps(_mm256_fmadd_ps(k, _mm256_loadu_ps(sc + g), _mm256_loadu_ps(bi + g)),
                            _mm256_loadu_ps(xgg + g), a);
    if (g < G) { /* past G: the next row's values, zeros or stale scratch; the products masked out */
        const __m256 m = first_lanes(G - g);
        const __m256 v = _mm256_fmadd_ps(k, _mm256_loadu_ps(sc + g), _mm256_loadu_ps(bi + g));
        a = _mm256_add_ps(a, _mm256_and_ps(m, _mm256_mul_ps(v, _mm256_loadu_ps(xgg + g))));
    }
    return a;
}

/* A last odd MLX 4-bit block b (its 16 code bytes at p) against x: the
 * block's evens and odds sit 32 apart in x (XL_MLX4); int32 lanes. */
T2 INL __m256i mlx4_last(const uint8_t *p, const xrow *x, int64_t b, const bool two) {
    const int8_t *c = x->c + 32 * b;
    const __m256i wv = nibbles16(p);
    const __m256i xc = _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(c + 32)), _mm_loadu_si128((const __m128i *)c));
    if (!two) return dot_u(wv, xc);
    const int8_t *c2 = x->c2 + 32 * b;
    return dot_u2(wv, xc, _mm256_set_m128i(_mm_loadu_si128((const __m128i *)(c2 + 32)), _mm_loadu_si128((const __m128i *)c2)));
}

/* MLX 4/8-bit row n against one x row; sc / bi the row's scales and biases.
 * Per block b the int products take scale·dx_b; the offsets per group. */
T2 INL float dot_mlx_t(const mlxn_qmat *w, int64_t n, const xrow *x, const float *sc, const float *bi,
                       int64_t G, const bool two, const int sh) {
    const int64_t K = w->K, nb = K / 32;
    /* the offsets in a0's lanes from the start (8-bit with x in one part:
     * with the +128 of q - 128) */
    __m256 a0 = mlx_offsets_v(sc, bi, x->xgg, G, w->bits == 8 && !two), a1 = _mm256_setzero_ps();
    if (w->bits == 8 && two) {
        /* codes q zero-extended to int16 against x's 128·c + c2: products
         * ≤ 255·16320, a block's sum < 2^31; no sign moves, no +128 */
        const uint8_t *row = (const uint8_t *)w->w + (size_t)n * (size_t)K;
        for (int64_t b = 0; b < nb; b++) {
            if (b & 1) PF2(row + 32 * b);
            const __m256i q0 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(row + 32 * b)));
            const __m256i q1 = _mm256_cvtepu8_epi16(_mm_loadu_si128((const __m128i *)(row + 32 * b + 16)));
            const __m256i s = _mm256_add_epi32(
                _mm256_madd_epi16(q0, _mm256_loadu_si256((const __m256i *)(x->x16 + 32 * b))),
                _mm256_madd_epi16(q1, _mm256_loadu_si256((const __m256i *)(x->x16 + 32 * b + 16))));
            const __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), _mm256_set1_ps(sc[b >> sh] * x->dx[b]), a0);
            a0 = a1; /* two chains, no branch */
            a1 = t;
        }
        return mlxn_hsum_256(_mm256_add_ps(a0, a1));
    }
    if (w->bits == 8) {
        const uint8_t *row = (const uint8_t *)w->w + (size_t)n * (size_t)K;
        const __m256i flip = _mm256_set1_epi8((char)0x80);
        for (int64_t b = 0; b < nb; b++) {
            if (b & 1) PF2(row + 32 * b);
            const __m256i q = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(row + 32 * b)), flip);
            const __m256i aq = _mm256_abs_epi8(q);
            const __m256i c = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x->c + 32 * b)), q);
            __m256i s;
            if (two) {
                const __m256i c2 = _mm256_sign_epi8(_mm256_loadu_si256((const __m256i *)(x->c2 + 32 * b)), q);
                s = dot_u2(aq, c, c2);
            } else {
                s = dot_u(aq, c);
            }
            const __m256 fb = _mm256_set1_ps(sc[b >> sh] * x->dx[b]);
            const __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), fb, a0); /* two chains, no branch */
            a0 = a1;
            a1 = t;
        }
        return mlxn_hsum_256(_mm256_add_ps(a0, a1));
    }
    const uint8_t *row = (const uint8_t *)w->w + (size_t)n * (size_t)(K / 2);
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* a block pair: 32 bytes, 64 codes */
        if (b & 2) PF2(row + 16 * b);
        const __m256i v = _mm256_loadu_si256((const __m256i *)(row + 16 * b));
        const __m256i lo = _mm256_and_si256(v, m4), hi = _mm256_and_si256(_mm256_srli_epi16(v, 4), m4);
        const int8_t *c = x->c + 32 * b;
        __m256i s;
        /* evens' and odds' pair sums added while still int16: at most
         * 2·(2·15·127) for the codes, 2·(2·15·64) for the residual's */
        const __m256i p1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)c)),
                                            _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(c + 32))));
        if (two) {
            const int8_t *c2 = x->c2 + 32 * b;
            const __m256i p2 =
                _mm256_add_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)c2)),
                                 _mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(c2 + 32))));
            s = _mm256_add_epi32(_mm256_madd_epi16(p1, _mm256_set1_epi16(128)),
                                 _mm256_madd_epi16(p2, _mm256_set1_epi16(1)));
        } else {
            s = _mm256_madd_epi16(p1, _mm256_set1_epi16(1));
        }
        /* lanes 0-3 hold block b, 4-7 block b+1 */
        __m128 f2 = ld2(x->dx + b);
        f2 = _mm_mul_ps(f2, sh ? _mm_set1_ps(sc[b >> sh]) : ld2(sc + b));
        const __m256 fb = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f2), pair);
        const __m256 t = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), fb, a0); /* two chains, no branch */
        a0 = a1;
        a1 = t;
    }
    if (b < nb) /* a last odd block */
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlx4_last(row + 16 * b, x, b, two)),
                             _mm256_set1_ps(sc[b >> sh] * x->dx[b]), a0);
    return mlxn_hsum_256(_mm256_add_ps(a0, a1));
}

/* MLX 4-bit rows w0 and w1 (their scales / biases as f32: s0, b0, s1, b1)
 * against one x row: the x loads and the horizontal sums shared by the
 * pair (at K = 576 a row's 18 blocks left the per-row work a quarter of
 * the time). The products as dot_mlx_t's 4-bit loop. */
T2 INL void dot_mlx4x2_t(const uint8_t *w0, const uint8_t *w1, const xrow *x, const float *s0, const float *b0,
                         const float *s1, const float *b1, int64_t nb, int64_t G, float *y0, float *y1,
                         const bool two, const int sh) {
    const __m256i m4 = _mm256_set1_epi8(0x0F), k128 = _mm256_set1_epi16(128), one = _mm256_set1_epi16(1);
    const __m256i pair = _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    __m256 a0 = mlx_offsets_v(s0, b0, x->xgg, G, false), a1 = mlx_offsets_v(s1, b1, x->xgg, G, false);
    const size_t rs = (size_t)(w1 - w0), at = pf_pair_at(rs);
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* a block pair: 32 bytes of each row */
        if (b & 2) {
            const size_t sk = (size_t)(16 * b) >= at ? rs : 0;
            PF2(w0 + 16 * b + sk);
            PF2(w1 + 16 * b + sk);
        }
        const __m256i v0 = _mm256_loadu_si256((const __m256i *)(w0 + 16 * b));
        const __m256i v1 = _mm256_loadu_si256((const __m256i *)(w1 + 16 * b));
        const __m256i lo0 = _mm256_and_si256(v0, m4), hi0 = _mm256_and_si256(_mm256_srli_epi16(v0, 4), m4);
        const __m256i lo1 = _mm256_and_si256(v1, m4), hi1 = _mm256_and_si256(_mm256_srli_epi16(v1, 4), m4);
        const __m256i ce = _mm256_loadu_si256((const __m256i *)(x->c + 32 * b));
        const __m256i co = _mm256_loadu_si256((const __m256i *)(x->c + 32 * b + 32));
        __m256i t0 = _mm256_add_epi16(_mm256_maddubs_epi16(lo0, ce), _mm256_maddubs_epi16(hi0, co));
        __m256i t1 = _mm256_add_epi16(_mm256_maddubs_epi16(lo1, ce), _mm256_maddubs_epi16(hi1, co));
        if (two) {
            const __m256i ce2 = _mm256_loadu_si256((const __m256i *)(x->c2 + 32 * b));
            const __m256i co2 = _mm256_loadu_si256((const __m256i *)(x->c2 + 32 * b + 32));
            t0 = _mm256_add_epi32(_mm256_madd_epi16(t0, k128),
                                  _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo0, ce2),
                                                                     _mm256_maddubs_epi16(hi0, co2)), one));
            t1 = _mm256_add_epi32(_mm256_madd_epi16(t1, k128),
                                  _mm256_madd_epi16(_mm256_add_epi16(_mm256_maddubs_epi16(lo1, ce2),
                                                                     _mm256_maddubs_epi16(hi1, co2)), one));
        } else {
            t0 = _mm256_madd_epi16(t0, one);
            t1 = _mm256_madd_epi16(t1, one);
        }
        /* lanes 0-3 block b, 4-7 block b+1: factors scale·dx of each */
        const __m128 dx = ld2(x->dx + b);
        const __m128 f0 = _mm_mul_ps(dx, sh ? _mm_set1_ps(s0[b >> sh]) : ld2(s0 + b));
        const __m128 f1 = _mm_mul_ps(dx, sh ? _mm_set1_ps(s1[b >> sh]) : ld2(s1 + b));
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t0), _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f0), pair), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(t1), _mm256_permutevar8x32_ps(_mm256_castps128_ps256(f1), pair), a1);
    }
    if (b < nb) { /* a last odd block */
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlx4_last(w0 + 16 * b, x, b, two)),
                             _mm256_set1_ps(s0[b >> sh] * x->dx[b]), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlx4_last(w1 + 16 * b, x, b, two)),
                             _mm256_set1_ps(s1[b >> sh] * x->dx[b]), a1);
    }
    const __m128 r = hsum2_256(a0, a1);
    *y0 = _mm_cvtss_f32(r);
    *y1 = _mm_cvtss_f32(_mm_movehdup_ps(r));
}

/* Rows [n0, n1) of MLX 4/8-bit W against the M x rows, with x's parts and
 * the group shift as constants: gcc had inlined one generic copy of the
 * dot into mlxn_dec_avx2, tested them per block and moved it into the
 * function's cold section (perf: 65% of a decode step there). */
T2 INL void mlx_rows_t(const mlxn_qmat *w, const xrow *xr, int64_t M, float *y, int64_t n0, int64_t n1,
                       float *sc, float *bi, const bool two, const int sh) {
    const int64_t G = w->K / w->group, N = w->N, R = sb_rows(G);
    const size_t rb = (size_t)(w->K / 8 * w->bits);
    for (int64_t c0 = n0; c0 < n1; c0 += R) { /* a run of rows: scales and biases converted at once */
        const int64_t c1 = c0 + R < n1 ? c0 + R : n1;
        mlx_sb_run(w, c0 * G, c1 * G, sc, bi);
        int64_t n = c0;
        /* 4-bit: rows two at a time where pair_rows says. (8-bit ones so
         * were 18 % faster from L2 but 5 % slower streaming from memory,
         * as the head is read) */
        if (M == 1 && w->bits == 4 && pair_rows(w->K, rb))
            for (; n + 2 <= c1; n += 2) {
                const float *s0 = sc + (n - c0) * G, *b0 = bi + (n - c0) * G;
                const uint8_t *w0 = (const uint8_t *)w->w + (size_t)n * rb;
                dot_mlx4x2_t(w0, w0 + rb, xr, s0, b0, s0 + G, b0 + G, w->K / 32, G, y + n, y + n + 1, two, sh);
            }
        for (; n < c1; n++)
            for (int64_t m = 0; m < M; m++)
                y[m * N + n] = dot_mlx_t(w, n, &xr[m], sc + (n - c0) * G, bi + (n - c0) * G, G, two, sh);
    }
}
#define MLX_ROWS(NAME, TWO, SH)                                                                      \
    T2 __attribute__((noinline)) static void NAME(const mlxn_qmat *w, const xrow *xr, int64_t M,     \
                                                  float *y, int64_t n0, int64_t n1, float *sc,       \
                                                  float *bi) {                                       \
        mlx_rows_t(w, xr, M, y, n0, n1, sc, bi, TWO, SH);                                            \
    }
MLX_ROWS(mlx_rows_1g32, false, 0)
MLX_ROWS(mlx_rows_1g64, false, 1)
MLX_ROWS(mlx_rows_1g128, false, 2)
MLX_ROWS(mlx_rows_2g32, true, 0)
MLX_ROWS(mlx_rows_2g64, true, 1)
MLX_ROWS(mlx_rows_2g128, true, 2)
#undef MLX_ROWS

/* MLX 2/3/5/6-bit (B bits): element k of a row sits at bit B·k of its
 * little-endian bit stream, so the 8 codes of chunk i (elements 8i..8i+7)
 * lie in bytes B·i .. B·i + B - 1, code j at bit B·j of them. A block of 32
 * is 4 chunks in 4·B bytes. Each 128-bit lane takes one chunk: a byte
 * shuffle gives word j the two bytes holding code j's bits (from byte
 * B·j/8), a multiply by 2^(16 - B - B·j%8) puts the code at the word's
 * top, a shift by 16 - B brings it down: 16 codes as int16 in three
 * instructions, then madd with x's int16 (as MLX 8-bit with two parts). */
#define MLXB_W(B, L, J) (L) * (B) + (J) * (B) / 8, (L) * (B) + (J) * (B) / 8 + 1
#define MLXB_L(B, L) MLXB_W(B, L, 0), MLXB_W(B, L, 1), MLXB_W(B, L, 2), MLXB_W(B, L, 3), MLXB_W(B, L, 4), \
                     MLXB_W(B, L, 5), MLXB_W(B, L, 6), MLXB_W(B, L, 7)
#define MLXB_SHUF(B) {MLXB_L(B, 0), MLXB_L(B, 1)}
#define MLXB_M(B, J) (int16_t)(1 << (16 - (B) - (J) * (B) % 8))
#define MLXB_ML(B) MLXB_M(B, 0), MLXB_M(B, 1), MLXB_M(B, 2), MLXB_M(B, 3), MLXB_M(B, 4), MLXB_M(B, 5), \
                   MLXB_M(B, 6), MLXB_M(B, 7)
#define MLXB_MUL(B) {MLXB_ML(B), MLXB_ML(B)}
_Alignas(32) static const uint8_t mlxb_shuf[7][32] = {[2] = MLXB_SHUF(2), [3] = MLXB_SHUF(3), [5] = MLXB_SHUF(5),
                                                      [6] = MLXB_SHUF(6)};
_Alignas(32) static const int16_t mlxb_mul[7][16] = {[2] = MLXB_MUL(2), [3] = MLXB_MUL(3), [5] = MLXB_MUL(5),
                                                     [6] = MLXB_MUL(6)};
#undef MLXB_W
#undef MLXB_L
#undef MLXB_SHUF
#undef MLXB_M
#undef MLXB_ML
#undef MLXB_MUL

/* 16 codes as int16 from the two chunks at p and p + B (a 16-byte load
 * broadcast to both lanes; the high lane's shuffle starts B bytes on). */
T2 INL __m256i mlxb_codes16(const uint8_t *p, __m256i shuf, __m256i mul, const int B) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)p));
    return _mm256_srli_epi16(_mm256_mullo_epi16(_mm256_shuffle_epi8(v, shuf), mul), 16 - B);
}

/* Σ q·x16 over the block of codes at p, as 8 int32 lanes. */
T2 INL __m256i mlxb_block(const uint8_t *p, const int16_t *x16, __m256i shuf, __m256i mul, const int B) {
    return _mm256_add_epi32(
        _mm256_madd_epi16(mlxb_codes16(p, shuf, mul, B), _mm256_loadu_si256((const __m256i *)x16)),
        _mm256_madd_epi16(mlxb_codes16(p + 2 * B, shuf, mul, B), _mm256_loadu_si256((const __m256i *)(x16 + 16))));
}

/* f[b] = sc[b >> sh]·dx[b] for b < nb rounded up to 8 (the reads past
 * the row's G scales meet the next row's or the run's 8 spare values; dx
 * holds nb rounded up to 8; the extra factors go unused). */
T2 INL void mlxb_factors(float *f, const float *sc, const float *dx, int64_t nb, const int sh) {
    const __m256i dup = sh == 1 ? _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3) : _mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1);
    for (int64_t b = 0; b < nb; b += 8) {
        __m256 s;
        if (sh == 0) s = _mm256_loadu_ps(sc + b);
        else if (sh == 1) s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(sc + b / 2)), dup);
        else s = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(ld2(sc + b / 4)), dup);
        _mm256_storeu_ps(f + b, _mm256_mul_ps(s, _mm256_loadu_ps(dx + b)));
    }
}

/* Row q (K·B/8 bytes; 16 - 2·B readable bytes past its end) against x16:
 * Σ_b scale·dx_b·Σ q·x16 + Σ_g bias_g·Σx_g; f: room for nb rounded up to 8. */
T2 INL float dot_mlxb_t(const uint8_t *q, const xrow *x, const float *sc, const float *bi, float *f, int64_t nb,
                        int64_t G, const int B, const int sh) {
    const __m256i shuf = _mm256_load_si256((const __m256i *)mlxb_shuf[B]);
    const __m256i mul = _mm256_load_si256((const __m256i *)mlxb_mul[B]);
    mlxb_factors(f, sc, x->dx, nb, sh);
    __m256 a0 = mlx_offsets_v(sc, bi, x->xgg, G, false), a1 = _mm256_setzero_ps();
    int64_t b = 0;
    for (; b + 2 <= nb; b += 2) { /* two blocks a step: one prefetch, one loop test */
        const uint8_t *p = q + (size_t)(4 * B) * (size_t)b;
        PF2(p);
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlxb_block(p, x->x16 + 32 * b, shuf, mul, B)),
                             _mm256_broadcast_ss(f + b), a0);
        a1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlxb_block(p + 4 * B, x->x16 + 32 * b + 32, shuf, mul, B)),
                             _mm256_broadcast_ss(f + b + 1), a1);
    }
    if (b < nb)
        a0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(mlxb_block(q + (size_t)(4 * B) * (size_t)b, x->x16 + 32 * b, shuf,
                                                           mul, B)),
                             _mm256_broadcast_ss(f + b), a0);
    return mlxn_hsum_256(_mm256_add_ps(a0, a1));
}

/* Rows [n0, n1) of MLX B-bit W (B = 2, 3, 5, 6; group 32 << sh). The
 * matrix's last row goes through `tail` (a copy with zeros after it): its
 * last block's loads reach 16 - 2·B bytes past the end. The per-block
 * factors go after it (al32(K + 32) bytes on). */
T2 INL void mlxb_rows_t(const mlxn_qmat *w, const xrow *xr, int64_t M, float *y, int64_t n0, int64_t n1, float *sc,
                        float *bi, uint8_t *tail, const int B, const int sh) {
    const int64_t G = w->K / w->group, N = w->N, nb = w->K / 32;
    const size_t rowb = (size_t)(w->K / 8 * B);
    float *f = (float *)(void *)(tail + al32((size_t)w->K + 32));
    const int64_t R = sb_rows(G);
    for (int64_t c0 = n0; c0 < n1; c0 += R) { /* a run of rows, as mlx_rows_t */
        const int64_t c1 = c0 + R < n1 ? c0 + R : n1;
        mlx_sb_run(w, c0 * G, c1 * G, sc, bi);
        for (int64_t n = c0; n < c1; n++) {
            const uint8_t *q = (const uint8_t *)w->w + (size_t)n * rowb;
            if (n == N - 1) {
                memcpy(tail, q, rowb);
                memset(tail + rowb, 0, 32);
                q = tail;
            }
            for (int64_t m = 0; m < M; m++)
                y[m * N + n] = dot_mlxb_t(q, &xr[m], sc + (n - c0) * G, bi + (n - c0) * G, f, nb, G, B, sh);
        }
    }
}
#define MLXB_ROWS(NAME, B, SH)                                                                       \
    T2 __attribute__((noinline)) static void NAME(const mlxn_qmat *w, const xrow *xr, int64_t M,     \
                                                  float *y, int64_t n0, int64_t n1, float *sc,       \
                                                  float *bi, uint8_t *tail) {                        \
        mlxb_rows_t(w, xr, M, y, n0, n1, sc, bi, tail, B, SH);                                       \
    }
/* each width at groups of 32, 64, 128 */
#define MLXB_GROUPS(B)                                                                               \
    MLXB_ROWS(mlxb_rows_##B##g32, B, 0) MLXB_ROWS(mlxb_rows_##B##g64, B, 1)                          \
    MLXB_ROWS(mlxb_rows_##B##g128, B, 2)
MLXB_GROUPS(2)
MLXB_GROUPS(3)
MLXB_GROUPS(5)
MLXB_GROUPS(6)
#undef MLXB_GROUPS
#undef MLXB_ROWS

/* Rows [n0, n1) of a GGML-block W against the M x rows, one function per
 * format (each dot inlined into its own loop; nb: the dot's block count). */
#define GGML_ROWS(NAME, DOT, NB)                                                                     \
    T2 __attribute__((noinline)) static void NAME(const mlxn_qmat *w, const xrow *xr, int64_t M,     \
                                                  float *y, int64_t n0, int64_t n1) {                \
        for (int64_t n = n0; n < n1; n++) {                                                          \
            const uint8_t *row = (const uint8_t *)w->w + (size_t)n * w->row_bytes;                  \
            for (int64_t m = 0; m < M; m++) y[m * w->N + n] = DOT(row, &xr[m], NB);                 \
        }                                                                                            \
    }
/* q4_0 / q4_1: rows two at a time when there is one x row (and pair_rows) */
#define Q4_ROWS(NAME, Q41)                                                                           \
    T2 __attribute__((noinline)) static void NAME(const mlxn_qmat *w, const xrow *xr, int64_t M,     \
                                                  float *y, int64_t n0, int64_t n1) {                \
        const int64_t nb = w->K / 32;                                                                \
        const uint8_t *w0 = (const uint8_t *)w->w;                                                   \
        int64_t n = n0;                                                                              \
        if (M == 1 && pair_rows(w->K, w->row_bytes))                                                 \
            for (; n + 2 <= n1; n += 2)                                                              \
                dot_q4x2(w0 + (size_t)n * w->row_bytes, w0 + (size_t)(n + 1) * w->row_bytes, xr, nb, \
                         y + n, y + n + 1, Q41);                                                     \
        for (; n < n1; n++)                                                                          \
            for (int64_t m = 0; m < M; m++)                                                          \
                y[m * w->N + n] = dot_q4(w0 + (size_t)n * w->row_bytes, &xr[m], nb, Q41);            \
    }
Q4_ROWS(rows_q40, false)
Q4_ROWS(rows_q41, true)
#undef Q4_ROWS
GGML_ROWS(rows_q80, dot_q80, w->K / 32)
GGML_ROWS(rows_q4k, dot_q4k, w->K / 256)
GGML_ROWS(rows_q5k, dot_q5k, w->K / 256)
GGML_ROWS(rows_q6k, dot_q6k, w->K / 256)
#undef GGML_ROWS

static uintptr_t up32(uintptr_t p) { return (p + 31) & ~(uintptr_t)31; }

T2 void mlxn_dec_avx2(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
                      void *scratch) {
    const int kind = kind_of(w);
    const int64_t K = w->K, nb = K / 32;
    const bool two = mlxn_dec_avx2_parts(w) == 2, mlx = kind == K_MLX4 || kind == K_MLX8 || kind == K_MLXB;
    const size_t v = al32((size_t)nb * 4); /* a float per block (scales, biases: per group, fewer) */
    const int per = mlx ? w->group / 32 : 1;
    uint8_t *p = (uint8_t *)up32((uintptr_t)scratch);
    float *sc = (float *)p, *bi = (float *)(p + sb_bytes(K)); /* a run of rows' worth each */
    p += 2 * sb_bytes(K);
    uint8_t *tail = p; /* MLX 2/3/5/6-bit: a row copy, then factors */
    p += al32((size_t)K + 32) + v;
    xrow xr[MLXN_AVX2_DECODE_ROWS];
    for (int64_t m = 0; m < M; m++) {
        xrow *r = &xr[m];
        r->c = (int8_t *)p;
        r->c2 = (int8_t *)(p + al32((size_t)K + 32));
        p += 2 * al32((size_t)K + 32);
        r->dx = (float *)p;
        r->xs = (float *)(p + v);
        r->xg = (float *)(p + 2 * v);
        r->xgg = (float *)(p + 3 * v);
        r->xs16 = (int32_t *)(p + 4 * v);
        /* 2K bytes over c and c2 (2·al32(K + 32) of them, adjacent) */
        r->x16 = (kind == K_MLX8 && two) || kind == K_MLXB ? (int16_t *)(void *)r->c : NULL;
        p += 6 * v;
        quant_x(x + m * K, K, r, kind == K_MLX4 ? XL_MLX4 : kind == K_Q40 || kind == K_Q41 ? XL_HALVES : XL_NAT,
                two, kind == K_Q6K);
        if (mlx) {
            const int64_t G = K / w->group;
            for (int64_t g = 0; g < G; g++) {
                float s = 0.0f;
                for (int i = 0; i < per; i++) s += r->xg[g * per + i];
                r->xgg[g] = s;
            }
        }
    }
    if (kind == K_MLXB) {
        static void (*const fb[7][3])(const mlxn_qmat *, const xrow *, int64_t, float *, int64_t, int64_t, float *,
                                      float *, uint8_t *) = {
            [2] = {mlxb_rows_2g32, mlxb_rows_2g64, mlxb_rows_2g128},
            [3] = {mlxb_rows_3g32, mlxb_rows_3g64, mlxb_rows_3g128},
            [5] = {mlxb_rows_5g32, mlxb_rows_5g64, mlxb_rows_5g128},
            [6] = {mlxb_rows_6g32, mlxb_rows_6g64, mlxb_rows_6g128},
        };
        fb[w->bits][per == 1 ? 0 : per == 2 ? 1 : 2](w, xr, M, y, n0, n1, sc, bi, tail);
        return;
    }
    if (mlx) {
        void (*f)(const mlxn_qmat *, const xrow *, int64_t, float *, int64_t, int64_t, float *, float *) =
            two ? (per == 1 ? mlx_rows_2g32 : per == 2 ? mlx_rows_2g64 : mlx_rows_2g128)
                : (per == 1 ? mlx_rows_1g32 : per == 2 ? mlx_rows_1g64 : mlx_rows_1g128);
        f(w, xr, M, y, n0, n1, sc, bi);
        return;
    }
    void (*f)(const mlxn_qmat *, const xrow *, int64_t, float *, int64_t, int64_t) =
        kind == K_Q40   ? rows_q40
        : kind == K_Q41 ? rows_q41
        : kind == K_Q80 ? rows_q80
        : kind == K_Q4K ? rows_q4k
        : kind == K_Q5K ? rows_q5k
                        : rows_q6k;
    f(w, xr, M, y, n0, n1);
}

#else /* not x86: never served */
int mlxn_dec_avx2_parts(const mlxn_qmat *w) {
    (void)w;
    return 0;
}
size_t mlxn_dec_avx2_scratch(int64_t K, int64_t M) {
    (void)K;
    (void)M;
    return 0;
}
void mlxn_dec_avx2(const mlxn_qmat *w, const float *x, float *y, int64_t M, int64_t n0, int64_t n1,
                   void *scratch) {
    (void)w, (void)x, (void)y, (void)M, (void)n0, (void)n1, (void)scratch;
}
#endif
